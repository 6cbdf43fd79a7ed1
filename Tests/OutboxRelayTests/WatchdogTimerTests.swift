import OutboxRelay
import Testing

/// systemd's watchdog pings when the clock they are given goes backwards.
@Suite struct WatchdogClockTests {
    /// A clock that went backwards (a wall clock stepped back) must not silence the pings until
    /// it catches up again: systemd would kill a healthy relay.
    @Test func keepsPingingWhenTheClockGoesBackwards() {
        var timer = WatchdogTimer(intervalMicros: 1_000_000)
        let pings = [3_600_000_000, 1_000_000, 1_400_000, 1_500_000].map { timer.due(nowMicros: Int64($0)) }
        #expect(pings == [true, true, false, true], "an hour back: ping at once, and measure from there")
    }
}
