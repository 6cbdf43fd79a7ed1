import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// The signals besides SIGTERM and SIGINT (which stop the relay gracefully, through the
/// `ServiceGroup`) that a service manager or an operator may send. SIGHUP, SIGUSR1 and SIGUSR2
/// are logged and otherwise ignored: there is no configuration to reload, and their default
/// action would end the relay. SIGPIPE is ignored, so a write to a closed socket fails with
/// EPIPE, which the connection reports, instead of killing the process.
public struct OtherSignals: Service {
    static let logged: [UnixSignal] = [.sighup, .sigusr1, .sigusr2]
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Sets those signals to be ignored; call first thing, so none of them can end the process
    /// before ``run()`` watches for them.
    public static func ignore() {
        for signal in [SIGPIPE, SIGHUP, SIGUSR1, SIGUSR2] {
            // SIG_ERR only for an invalid signal number or SIGKILL/SIGSTOP, none of these.
            _ = Glibc.signal(signal, SIG_IGN)
        }
    }

    public func run() async {
        let signals = await UnixSignalsSequence(trapping: Self.logged)
        for await signal in signals.cancelOnGracefulShutdown() {
            logger.info("\(signal) received: there is no configuration to reload; still running")
        }
    }
}
