import Foundation
import Logging
import OutboxRelay
import OutboxRelayIO
import ServiceLifecycle

/// Runs the ``RelayLoop`` on its own thread as a service-lifecycle `Service`, telling systemd
/// `READY=1` at once (the loop reports its connections through `STATUS=`): a graceful shutdown
/// (SIGTERM, SIGINT) asks the loop to stop after the batch in hand; cancellation (when shutdown
/// takes longer than allowed) abandons the thread, and the process exit closes its connections,
/// which frees the leases in PostgreSQL.
public struct RelayService: Service {
    private let configuration: RelayConfiguration
    private let logger: Logger
    private let notifier: SystemdNotifier
    private let health: RelayHealth?

    public init(configuration: RelayConfiguration, logger: Logger, notifier: SystemdNotifier = SystemdNotifier(), health: RelayHealth? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.notifier = notifier
        self.health = health
    }

    public func run() async throws {
        let stop = StopSignal()
        if let problem = stop.pipeProblem { logger.error("\(problem)") }
        let finished = OneShot()
        let (configuration, logger, notifier, health) = (self.configuration, self.logger, self.notifier, self.health)
        // READY=1 as soon as the relay runs, servers or not: systemd sees the unit active while
        // STATUS= says what it waits for, so a database that comes up late never fails the start.
        notifier.notify("READY=1")
        notifier.notify("STATUS=waiting: connecting to PostgreSQL and Redis")
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    finished.set { continuation.resume() }
                    let thread = Thread {
                        RelayLoop(configuration: configuration, logger: logger, stop: stop, notifier: notifier, health: health).run()
                        finished.fire()
                    }
                    thread.name = "outbox-relay"
                    thread.start()
                }
            } onGracefulShutdown: {
                logger.info("shutting down")
                notifier.notify("STOPPING=1")
                stop.requestStop()
            }
        } onCancel: {
            stop.requestStop()
            finished.fire()
        }
    }
}

/// Runs a stored action at most once, from whichever caller fires first.
final class OneShot: @unchecked Sendable {
    private let lock = NSLock()
    private var action: (() -> Void)?
    private var fired = false

    func set(_ action: @escaping () -> Void) {
        lock.lock()
        let fireNow = fired
        if !fired { self.action = action }
        lock.unlock()
        if fireNow { action() }
    }

    func fire() {
        lock.lock()
        let action = self.action
        self.action = nil
        fired = true
        lock.unlock()
        action?()
    }
}
