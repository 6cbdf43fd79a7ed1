import OutboxRelay
import Testing

/// The group driver's choice of which server's answer to read (``ArrivalOrder``).
@Suite struct ArrivalOrderTests {
    struct NotAsked: Error {}

    @Test func readsTheOnlyServerAskedWithoutLookingAtTheSockets() throws {
        var order = ArrivalOrder()
        let redis = try order.next(redisWaits: true, postgresWaits: false, redisHasBytes: { Issue.record("looked"); return false },
            postgresReady: { throw NotAsked() })
        #expect(redis == .redis)
        let postgres = try order.next(redisWaits: false, postgresWaits: true, redisHasBytes: { Issue.record("looked"); return false },
            postgresReady: { throw NotAsked() })
        #expect(postgres == .postgres)
    }

    @Test func readsWhicheverAnsweredRedisFirst() throws {
        var order = ArrivalOrder()
        #expect(order.next(redisWaits: true, postgresWaits: true, redisHasBytes: { true }, postgresReady: { true }) == .redis)
        #expect(order.next(redisWaits: true, postgresWaits: true, redisHasBytes: { false }, postgresReady: { true }) == .postgres)
        #expect(order.next(redisWaits: true, postgresWaits: true, redisHasBytes: { false }, postgresReady: { false }) == .wait)
    }

    @Test func aPostgreSQLFailureWhileLookingIsThrown() {
        var order = ArrivalOrder()
        #expect(throws: NotAsked.self) {
            try order.next(redisWaits: true, postgresWaits: true, redisHasBytes: { false }, postgresReady: { throw NotAsked() })
        }
    }

    /// Two seconds of silence from both: the driver reads Redis, whose read times out, instead of
    /// waiting for ever; waits that ended with input do not count, and a choice starts over.
    @Test func readsRedisAfterTooLongASilenceFromBoth() {
        var order = ArrivalOrder()
        func silent() -> ArrivalOrder.Choice {
            order.next(redisWaits: true, postgresWaits: true, redisHasBytes: { false }, postgresReady: { false })
        }
        for _ in 0..<(ArrivalOrder.silentWaitsBeforeBlocking - 1) {
            #expect(silent() == .wait)
            order.waited(withInput: false)
        }
        #expect(silent() == .wait)
        order.waited(withInput: true)
        #expect(silent() == .wait, "a wait with input is no silence")
        order.waited(withInput: false)
        #expect(silent() == .redis)
        #expect(order.silentWaits == 0)
        #expect(silent() == .wait, "silence counts again from the choice")
    }
}
