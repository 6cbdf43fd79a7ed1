import OutboxRelay
import Testing

/// Pages, pushes and lingers of one lease.
@Suite struct LeaseTempoTests {
    @Test func pagesGrowToThePageSizeWhilePushesStayAtTheBatchSize() {
        var tempo = LeaseTempo(maximumBatches: 10, batchSize: 100, pageSize: 1_000)
        var limits: [Int] = []
        while limits.count < 5 {
            limits.append(tempo.limit)
            #expect(tempo.afterBatch(available: tempo.limit) == .fetchAgain)
        }
        #expect(limits == [10, 40, 160, 640, 1_000])
        #expect(tempo.batchSize == 100)
        #expect(LeaseTempo(maximumBatches: 10, batchSize: 5_000, pageSize: 1_000).pageSize == 5_000, "a page holds at least a batch")
        #expect(LeaseTempo(maximumBatches: 10, batchSize: 100).pageSize == 100, "without a page size, a page is a batch")
        #expect(LeaseTempo(maximumBatches: 10, batchSize: 100, carriedLimit: 5_000, pageSize: 1_000).limit == 1_000)
    }

    @Test func aDrainedLeaseLingersAtMostItsLingers() {
        var tempo = LeaseTempo(maximumBatches: 10, batchSize: 10, carriedLimit: 10, lingers: 2)
        #expect(tempo.afterBatch(available: 3) == .linger)
        #expect(tempo.afterEmptyFetch() == .linger)
        #expect(tempo.afterBatch(available: 1) == .release)
        #expect(tempo.lingersLeft == 0)
    }

    @Test func onlyALeaseThatRelayedRowsLingers() {
        var tempo = LeaseTempo(maximumBatches: 10, batchSize: 10, lingers: 2)
        #expect(tempo.afterEmptyFetch() == .release, "an empty first fetch lets go at once")
    }

    @Test func aFullPageFetchesAgainAndTheBatchLimitStillReleases() {
        var tempo = LeaseTempo(maximumBatches: 2, batchSize: 10, carriedLimit: 10, lingers: 5)
        #expect(tempo.afterBatch(available: 10) == .fetchAgain)
        #expect(tempo.afterBatch(available: 10) == .release)
        #expect(tempo.leftBacklog)
    }

    @Test func oneBatchPerLeaseNeverLingers() {
        var tempo = LeaseTempo(maximumBatches: 1, batchSize: 10, lingers: 5)
        #expect(tempo.lingersLeft == 0)
        #expect(tempo.afterBatch(available: 3) == .release)
    }
}

/// Which wake-ups keep a lingering lease: those that may be for its key.
@Suite struct WakeUpPayloadTests {
    @Test func aWakeUpNamesItsKeysAsBytes() {
        #expect(SplitKey.named("a").mayBeNamed(inWakeUp: "b,a"))
        #expect(!SplitKey.named("a").mayBeNamed(inWakeUp: "b,c"))
        #expect(!SplitKey.named("caf\u{E9}").mayBeNamed(inWakeUp: "cafe\u{301}"), "NFC and NFD are two keys")
        #expect(SplitKey.null.mayBeNamed(inWakeUp: "a,"), "NULL is written as an empty name")
        #expect(!SplitKey.null.mayBeNamed(inWakeUp: "a"))
        #expect(SplitKey.named("a").mayBeNamed(inWakeUp: ""), "an empty payload may be for any key")
        #expect(SplitKey.named("x,y").mayBeNamed(inWakeUp: "z"), "a key with a comma cannot be told apart")
    }
}
