import Logging
import OutboxRelayIO

/// What the relay is waiting for, said once: a problem is logged at error level the first time,
/// at debug level while it repeats, and systemd's STATUS says it meanwhile; when the loop goes
/// round again, "relaying again" is logged once.
struct ProblemLog {
    private let logger: Logger
    private let notifier: SystemdNotifier
    private var last: String?

    init(logger: Logger, notifier: SystemdNotifier) {
        self.logger = logger
        self.notifier = notifier
    }

    mutating func report(_ message: String) {
        notifier.notify("STATUS=waiting: \(message.prefix(200))")
        if message == last {
            logger.debug("\(message)")
        } else {
            logger.error("\(message)")
            last = message
        }
    }

    mutating func recovered() {
        guard last != nil else { return }
        logger.info("relaying again")
        last = nil
    }
}
