internal import CSystemd

/// Sends service state to systemd with `sd_notify`; does nothing when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: Sendable {
    public init() {}

    /// Sends `state`, one or more `KEY=value` lines such as `READY=1` or `STOPPING=1`.
    public func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// Whether systemd asked for watchdog pings, and how often it expects them (microseconds).
    public var watchdogMicroseconds: UInt64? {
        var usec: UInt64 = 0
        return sd_watchdog_enabled(0, &usec) > 0 ? usec : nil
    }
}
