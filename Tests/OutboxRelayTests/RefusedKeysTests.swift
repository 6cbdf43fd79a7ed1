import OutboxRelay
import Testing

@Suite struct RefusedKeysTests {
    @Test func waitsOneSecondThenDoublesUpToAMinute() {
        var keys = RefusedKeys()
        let key = SplitKey.named("k")
        let first = keys.refused(key, reason: "wrong type", nowMicros: 0)
        #expect(first, "a new reason is logged")
        #expect(keys.isWaiting(key, nowMicros: 999_999))
        #expect(!keys.isWaiting(key, nowMicros: 1_000_000))
        let again = keys.refused(key, reason: "wrong type", nowMicros: 1_000_000)
        #expect(!again, "the same reason again is not")
        #expect(keys.isWaiting(key, nowMicros: 2_999_999))
        #expect(!keys.isWaiting(key, nowMicros: 3_000_000))
        var now: Int64 = 3_000_000
        for _ in 0..<10 { _ = keys.refused(key, reason: "wrong type", nowMicros: now); now += 1 }
        #expect(keys.isWaiting(key, nowMicros: now + 59_000_000))
        #expect(!keys.isWaiting(key, nowMicros: now + 60_000_000), "at most a minute")
        let changed = keys.refused(key, reason: "another key", nowMicros: now)
        #expect(changed, "a changed reason is logged")
    }

    @Test func otherKeysAndRelayedKeysDoNotWait() {
        var keys = RefusedKeys()
        _ = keys.refused(.named("a"), reason: "r", nowMicros: 0)
        #expect(!keys.isWaiting(.named("b"), nowMicros: 0))
        #expect(!keys.isWaiting(.null, nowMicros: 0))
        let reason = keys.relayed(.named("a"))
        #expect(reason == "r")
        #expect(!keys.isWaiting(.named("a"), nowMicros: 0))
        let none = keys.relayed(.named("a"))
        #expect(none == nil)
        #expect(keys.isEmpty)
    }
}
