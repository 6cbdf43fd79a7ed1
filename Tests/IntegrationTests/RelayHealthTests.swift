import Foundation
import OutboxRelayDaemon
import Testing

/// A clock the test moves by hand.
final class FakeClock: @unchecked Sendable {
    private let lock = NSLock()
    private var now: Int64

    init(micros: Int64 = 1_000_000_000) {
        now = micros
    }

    var micros: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return now
    }

    func advance(seconds: Double) {
        lock.lock()
        now += Int64(seconds * 1_000_000)
        lock.unlock()
    }
}

/// `/healthz` and `/readyz` decisions on a fake monotonic clock.
@Suite struct RelayHealthTests {
    @Test func liveUntilTheStallWindowPassesWithoutProgress() {
        let clock = FakeClock()
        let health = RelayHealth(stallSeconds: 30, monotonicMicros: { clock.micros })
        #expect(health.isLive, "live before the first round")
        health.loopWentRound(serversAnswered: true)
        clock.advance(seconds: 29.9)
        #expect(health.isLive)
        clock.advance(seconds: 0.2)
        #expect(!health.isLive, "30 s without progress")
    }

    @Test func anyProgressWithinAPassKeepsItLive() {
        let clock = FakeClock()
        let health = RelayHealth(stallSeconds: 30, monotonicMicros: { clock.micros })
        health.loopWentRound(serversAnswered: true)
        for _ in 0..<10 {
            clock.advance(seconds: 20)
            health.progressed()
            #expect(health.isLive, "a lease attempt or a batch every 20 s, a pass of 200 s")
        }
        clock.advance(seconds: 31)
        #expect(!health.isLive)
        health.progressed()
        #expect(health.isLive, "progress again")
    }

    @Test func readinessFollowsTheServersAnswers() {
        let clock = FakeClock()
        let health = RelayHealth(stallSeconds: 30, monotonicMicros: { clock.micros })
        #expect(!health.isReady)
        health.progressed()
        #expect(!health.isReady, "a lease attempt alone says nothing of Redis")
        health.progressed(serversAnswered: true)
        #expect(health.isReady, "a batch pushed and marked")
        health.loopWentRound(serversAnswered: false)
        #expect(!health.isReady)
    }
}

/// Sleeps of the relay's loop: woken at once by a stop, with or without the self-pipe.
@Suite struct StopSignalTests {
    @Test func aStopEndsASleepAtOnce() {
        let stop = StopSignal()
        #expect(stop.pipeProblem == nil)
        let started = Date()
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 0.1)
            stop.requestStop()
        }
        #expect(stop.sleep(seconds: 30) == .stop)
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(stop.sleep(seconds: 30) == .stop, "and every sleep after it")
    }

    @Test func sleepsForTheirTime() {
        let stop = StopSignal()
        let started = Date()
        #expect(stop.sleep(seconds: 0.2) == .timeout)
        let slept = Date().timeIntervalSince(started)
        #expect(slept >= 0.2 && slept < 1, "\(slept) s")
    }
}
