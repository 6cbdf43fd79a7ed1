import Foundation
import Logging
import OutboxRelay
import OutboxRelayDaemon

/// Runs a ``RelayLoop`` on its own thread inside the test process, as the daemon does.
final class RelayRunner: @unchecked Sendable {
    let stop = StopSignal()
    let logs = LogCapture()
    private let done = DispatchSemaphore(value: 0)

    init(
        _ configuration: RelayConfiguration, nowMicros: @escaping @Sendable () -> Int64 = RelayLoop.systemMicros, health: RelayHealth? = nil,
        monotonicMicros: @escaping @Sendable () -> Int64 = RelayClock.monotonicMicros
    ) {
        let (stop, logs, done) = (self.stop, self.logs, self.done)
        let thread = Thread {
            let logger = Logger(label: "test") { _ in logs.handler() }
            RelayLoop(configuration: configuration, logger: logger, stop: stop, nowMicros: nowMicros, health: health, monotonicMicros: monotonicMicros).run()
            done.signal()
        }
        thread.start()
    }

    /// Asks the loop to stop and waits for it; returns false if it did not stop within `seconds`.
    @discardableResult
    func finish(within seconds: Double = 10) -> Bool {
        stop.requestStop()
        return done.wait(timeout: .now() + seconds) == .success
    }
}

/// Log lines kept in memory, so tests can check what the relay said.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var captured: [String] = []

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return captured
    }

    func handler() -> LineLogHandler {
        LineLogHandler(level: .debug, redactor: .init(secrets: [])) { [self] line in
            lock.lock()
            captured.append(line)
            lock.unlock()
        }
    }
}
