/// When to send systemd's `WATCHDOG=1`: at half the interval systemd asked for, from a loop that
/// calls ``due(nowMicros:)`` each time it goes round. A wedged loop stops calling, stops pinging,
/// and systemd restarts the service. `nowMicros` should come from a monotonic clock; should a
/// clock still go backwards, the ping is sent at once rather than withheld until it catches up.
public struct WatchdogTimer: Sendable {
    public let intervalMicros: Int64?
    private var lastPing: Int64?

    /// `intervalMicros` is `WATCHDOG_USEC`, or nil when systemd asked for no watchdog.
    public init(intervalMicros: Int64?) {
        self.intervalMicros = intervalMicros
    }

    /// Whether a ping is due now; if so, counts it as sent.
    public mutating func due(nowMicros: Int64) -> Bool {
        guard let intervalMicros else { return false }
        if let lastPing, nowMicros >= lastPing, nowMicros - lastPing < intervalMicros / 2 { return false }
        lastPing = nowMicros
        return true
    }
}
