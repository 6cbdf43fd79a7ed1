internal import CSystemd
import OutboxRelay

/// Sends service state to systemd with `sd_notify`; does nothing when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: Sendable {
    public init() {}

    /// Sends `state`, one or more `KEY=value` lines such as `READY=1` or `STOPPING=1`. A
    /// `STATUS=` state is sent as one line (``singleLine(_:)``).
    public func notify(_ state: String) {
        _ = sd_notify(0, Self.singleLine(state))
    }

    /// `state` as sent: a `STATUS=` text (which may quote a server's reply or a key) has its
    /// control characters escaped, so it cannot add a line such as `WATCHDOG=1` of its own.
    public static func singleLine(_ state: String) -> String {
        state.hasPrefix("STATUS=") ? LineText.escaped(state) : state
    }

    /// Whether systemd asked for watchdog pings, and how often it expects them (microseconds).
    public var watchdogMicroseconds: UInt64? {
        var usec: UInt64 = 0
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : nil
    }
}
