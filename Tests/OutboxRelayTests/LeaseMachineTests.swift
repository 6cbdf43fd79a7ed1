import OutboxRelay
import Testing

/// The lease protocol, event by event: each test feeds answers and compares the exact actions.
@Suite struct LeaseMachineTests {
    static func row(_ id: Int64, queue: String = "q", at: Double? = nil) -> OutboxRow {
        let at = at.map { #","at":\#($0)"# } ?? ""
        return OutboxRow(id: id, payload: Array(#"{"class":"J","queue":"\#(queue)","jid":"\#(id)"\#(at)}"#.utf8), createdAtMicros: 1_000_000)
    }

    static func fetched(_ ids: [Int64], available: Int? = nil, alreadyPushed: RecordedRows = [], bad: Set<Int64> = []) -> LeaseMachine.Fetched {
        let rows = ids.map { bad.contains($0) ? OutboxRow(id: $0, payload: Array("nope".utf8), createdAtMicros: 0) : row($0) }
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, alreadyPushed: alreadyPushed, makeJID: { "x" })
        return LeaseMachine.Fetched(ids: ids, plan: plan, available: available ?? ids.count)
    }

    /// Rows as the record names them: each id with its row's stamp (its created_at).
    static func stamped(_ ids: [Int64]) -> RecordedRows {
        RecordedRows(Dictionary(uniqueKeysWithValues: ids.map { ($0, Int64(1_000_000)) }))
    }

    static func plan(_ ids: [Int64], alreadyPushed: RecordedRows = [], bad: Set<Int64> = []) -> BatchPlan {
        fetched(ids, alreadyPushed: alreadyPushed, bad: bad).plan
    }

    /// The outcome of a lease that finished; records an issue for any other action.
    static func outcome(_ action: LeaseMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> LeaseMachine.Outcome? {
        guard case .finished(let outcome) = action else {
            Issue.record("expected the end of the lease, got \(action)", sourceLocation: sourceLocation)
            return nil
        }
        return outcome
    }

    /// A machine with its lease granted under fence `0:7` and its first fetch sent.
    static func granted(batchSize: Int = 10, maximumBatches: Int = 10, alreadyPushed: RecordedRows = [], deadLetterProblem: String? = nil)
        -> LeaseMachine
    {
        var machine = LeaseMachine(
            tempo: LeaseTempo(maximumBatches: maximumBatches, batchSize: batchSize, carriedLimit: batchSize), deadLetterProblem: deadLetterProblem)
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        _ = machine.claimAnswered(.granted(fence: "0:7", alreadyPushed: alreadyPushed))
        return machine
    }

    @Test func aKeyLeasedElsewhereEndsAtOnce() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        #expect(machine.start() == .tryLease)
        var outcome = LeaseMachine.Outcome()
        outcome.leased = false
        #expect(machine.leaseAnswered(xid: nil) == .finished(outcome))
    }

    @Test func relaysOneBatchThenMarksReleasesAndFinishes() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10, carriedLimit: 10))
        #expect(machine.start() == .tryLease)
        #expect(machine.leaseAnswered(xid: 7) == .claim(xid: 7, rewound: nil))
        #expect(machine.claimAnswered(.granted(fence: "0:7", alreadyPushed: [])) == .send([.fetch(limit: 10, after: nil)]))
        #expect(machine.sent() == .receive(.fetch(limit: 10, after: nil)))
        // 3 of 10: the key is drained, so no fetch follows and nothing is marked yet.
        #expect(machine.fetched(Self.fetched([1, 2, 3])) == .push(Self.plan([1, 2, 3]), fence: "0:7", record: Self.stamped([1, 2, 3])))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1, 2, 3], scheduled: [])]), "marked only after the push")
        #expect(machine.sent() == .receive(.mark(ids: [1, 2, 3], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
        #expect(machine.redisReleased() == .releaseLease)
        var outcome = LeaseMachine.Outcome(handled: 3, relayed: 3)
        outcome.fence = "0:7"
        #expect(machine.leaseReleased() == .finished(outcome))
    }

    @Test func pipelinesTheNextFetchAndThePreviousMarkAroundEachPush() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        // Batch 1 is full: fetch batch 2 before pushing batch 1.
        #expect(machine.fetched(Self.fetched([1, 2])) == .send([.fetch(limit: 2, after: 2)]))
        #expect(machine.sent() == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.pushed) == .receive(.fetch(limit: 2, after: 2)))
        // Batch 2: fetch batch 3 and mark batch 1 in one group, then push batch 2; the record
        // covers batch 1, whose mark is in flight.
        #expect(machine.fetched(Self.fetched([3, 4])) == .send([.fetch(limit: 2, after: 4), .mark(ids: [1, 2], scheduled: [])]))
        guard case .push(let plan, _, let record) = machine.sent() else {
            Issue.record("expected the push of batch 2")
            return
        }
        #expect(plan == Self.plan([3, 4]))
        #expect(record == Self.stamped([1, 2, 3, 4]))
        #expect(machine.pushAnswered(.pushed) == .receive(.fetch(limit: 2, after: 4)))
        // Batch 3 comes back empty: the key is drained.
        #expect(machine.fetched(Self.fetched([])) == .receive(.mark(ids: [1, 2], scheduled: [])))
        #expect(machine.marked() == .send([.mark(ids: [3, 4], scheduled: [])]))
        #expect(machine.sent() == .receive(.mark(ids: [3, 4], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
    }

    /// The driver's order: the next fetch and the previous mark go to PostgreSQL before the batch
    /// is planned, so PostgreSQL works while the relay encodes the jobs and Redis takes them.
    @Test func sendsTheNextStatementsBeforeAskingForThePlan() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        #expect(machine.fetched(ids: [1, 2], available: 2) == .send([.fetch(limit: 2, after: 2)]))
        #expect(machine.sent() == .plan)
        #expect(machine.planned(Self.plan([1, 2])) == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.pushed) == .receive(.fetch(limit: 2, after: 2)))
        #expect(machine.fetched(ids: [3], available: 1) == .send([.mark(ids: [1, 2], scheduled: [])]))
        #expect(machine.sent() == .plan)
        #expect(machine.planned(Self.plan([3])) == .push(Self.plan([3]), fence: "0:7", record: Self.stamped([1, 2, 3])))
        var drained = Self.granted()
        _ = drained.sent()
        #expect(drained.fetched(ids: [5], available: 1) == .plan, "nothing to send first: plan at once")
        #expect(drained.planned(Self.plan([5])) == .push(Self.plan([5]), fence: "0:7", record: Self.stamped([5])))
    }

    @Test func letsGoOfAKeyAfterItsBatchesAndCarriesTheBatchSize() {
        var machine = Self.granted(batchSize: 2, maximumBatches: 1)
        _ = machine.sent()
        #expect(machine.fetched(Self.fetched([1, 2])) == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1, 2], scheduled: [])]))
        _ = machine.sent()
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
        _ = machine.redisReleased()
        guard let outcome = Self.outcome(machine.leaseReleased()) else { return }
        #expect(outcome.carriedLimit == 2, "the key still had a backlog")
    }

    @Test func marksWithoutPushingWhatAnEarlierHolderPushed() {
        var machine = Self.granted(alreadyPushed: [1, 2])
        #expect(machine.alreadyPushed == [1, 2])
        _ = machine.sent()
        let batch = Self.fetched([1, 2, 3], alreadyPushed: [1, 2])
        #expect(batch.plan.pushedIDs == [3])
        #expect(machine.fetched(batch) == .push(batch.plan, fence: "0:7", record: RecordedRows([1: RecordedRows.anyRow, 2: RecordedRows.anyRow, 3: 1_000_000])))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1, 2, 3], scheduled: [])]))
        _ = machine.sent()
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
    }

    @Test func keepsAnEarlierHoldersRowsThisLeaseDidNotReachInTheRecord() {
        var machine = Self.granted(batchSize: 2, maximumBatches: 1, alreadyPushed: [9])
        _ = machine.sent()
        let batch = Self.fetched([1, 2], alreadyPushed: [9])
        #expect(machine.fetched(batch) == .push(batch.plan, fence: "0:7", record: RecordedRows([1: 1_000_000, 2: 1_000_000, 9: RecordedRows.anyRow])))
        _ = machine.pushAnswered(.pushed)
        _ = machine.sent()
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: [9]))
    }

    @Test func aBatchWithNothingToPushIsOnlyMarked() {
        var machine = Self.granted(alreadyPushed: [1])
        _ = machine.sent()
        #expect(machine.fetched(Self.fetched([1], alreadyPushed: [1])) == .send([.mark(ids: [1], scheduled: [])]))
    }

    @Test func deadLettersBadRowsAfterThePushAndSkipsThemWithoutTheTable() {
        var machine = Self.granted()
        _ = machine.sent()
        let batch = Self.fetched([1, 2], bad: [2])
        let rejections = batch.plan.rejections
        #expect(rejections.map(\.id) == [2])
        _ = machine.fetched(batch)
        #expect(machine.pushAnswered(.pushed) == .send([.deadLetter(rejections)]))
        #expect(machine.sent() == .receive(.deadLetter(rejections)))
        #expect(machine.deadLettered(.failed("no table")) == .skip(rejections, because: "no table"))
        #expect(machine.skipped() == .send([.mark(ids: [1], scheduled: [])]))

        var without = Self.granted(deadLetterProblem: "the table is missing")
        _ = without.sent()
        _ = without.fetched(batch)
        #expect(without.pushAnswered(.pushed) == .skip(rejections, because: "the table is missing"))
    }

    @Test func aRefusedPushMarksNothingOfItsBatchButLetsTheMarksInFlightCommit() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        _ = machine.fetched(Self.fetched([1, 2]))
        _ = machine.sent()
        _ = machine.pushAnswered(.pushed)
        #expect(machine.fetched(Self.fetched([3, 4])) == .send([.fetch(limit: 2, after: 4), .mark(ids: [1, 2], scheduled: [])]))
        _ = machine.sent()
        #expect(machine.pushAnswered(.refused("wrong type")) == .receive(.fetch(limit: 2, after: 4)))
        #expect(machine.fetched(Self.fetched([5, 6])) == .receive(.mark(ids: [1, 2], scheduled: [])), "fetched rows are dropped")
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []), "3 and 4 are neither marked nor recorded")
        _ = machine.redisReleased()
        guard let outcome = Self.outcome(machine.leaseReleased()) else { return }
        #expect(outcome.refused == "wrong type")
        #expect(outcome.relayed == 2)
    }

    @Test func aFenceAheadOfTheClustersTransactionIdsStartsTheNextEpoch() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 700)
        #expect(machine.claimAnswered(.fenced(newerToken: "0:9000")) == .askNextTransactionID)
        #expect(machine.nextTransactionID(701) == .claim(xid: 700, rewound: "0:9000"))
        #expect(machine.claimAnswered(.granted(fence: "1:700", alreadyPushed: [])) == .send([.fetch(limit: 10, after: nil)]))
    }

    @Test func aFenceBelowTheClustersTransactionIdsIsAZombieLease() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 700)
        _ = machine.claimAnswered(.fenced(newerToken: "0:705"))
        #expect(machine.nextTransactionID(706) == .abandon(.fenced("token 700 is older than 0:705")))

        var twice = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = twice.start()
        _ = twice.leaseAnswered(xid: 700)
        _ = twice.claimAnswered(.fenced(newerToken: "0:9000"))
        _ = twice.nextTransactionID(701)
        #expect(twice.claimAnswered(.fenced(newerToken: "1:710")) == .abandon(.fenced("token 700 is older than 1:710")), "one new epoch at most")
    }

    @Test func aStopFinishesTheBatchInHandAndFetchesNoMore() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        machine.requestStop()
        #expect(machine.fetched(Self.fetched([1, 2])) == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1, 2], scheduled: [])]))

        var early = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = early.start()
        _ = early.leaseAnswered(xid: 7)
        early.requestStop()
        #expect(early.claimAnswered(.granted(fence: "0:7", alreadyPushed: [3])) == .releaseRedis(fence: "0:7", remaining: [3]))
    }

    /// Whatever step fails, the lease is abandoned (its record kept for the next holder), and
    /// nothing is marked that was not pushed.
    @Test func aFailureAtAnyStepAbandonsTheLease() {
        let failure = LeaseMachine.Failure.serverFailed("gone")
        var steps: [(String, (inout LeaseMachine) -> LeaseMachine.Action)] = []
        steps.append(("start", { $0.start() }))
        steps.append(("lease", { $0.leaseAnswered(xid: 7) }))
        steps.append(("claim", { $0.claimAnswered(.granted(fence: "0:7", alreadyPushed: [])) }))
        steps.append(("sent", { $0.sent() }))
        steps.append(("fetched", { $0.fetched(Self.fetched([1, 2])) }))
        steps.append(("pushed", { $0.pushAnswered(.pushed) }))
        steps.append(("sent", { $0.sent() }))
        steps.append(("marked", { $0.marked() }))
        steps.append(("redis released", { $0.redisReleased() }))
        for failAt in 1..<steps.count {
            var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10, carriedLimit: 10))
            var actions: [LeaseMachine.Action] = []
            for step in steps.prefix(failAt) { actions.append(step.1(&machine)) }
            #expect(machine.failed(failure) == .abandon(failure), "failing after \(steps[failAt - 1].0)")
            #expect(!actions.contains { if case .send(let group) = $0 { group.contains { if case .mark = $0 { true } else { false } } } else { false } } || failAt > 5)
            if case .abandon = machine.sent() {} else { Issue.record("an abandoned lease takes no more events") }
        }
    }

    @Test func answersOutOfTurnAbandonTheLease() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = machine.start()
        guard case .abandon(.serverFailed(let reason)) = machine.marked() else {
            Issue.record("a mark before any lease must abandon")
            return
        }
        #expect(reason.hasPrefix("protocol error: mark"))
    }

    // MARK: replica-acknowledged pushes (--redis-wait-replicas)

    @Test func anUnconfirmedPushIsNeitherMarkedNorRecordedAndAbandonsTheLease() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        #expect(machine.fetched(Self.fetched([1, 2])) == .send([.fetch(limit: 2, after: 2)]))
        #expect(machine.sent() == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.unconfirmed("0 of 1 replicas")) == .abandon(.unconfirmed("0 of 1 replicas")))
        #expect(machine.ledger.remaining.isEmpty, "the batch is not taken as pushed")
        #expect(machine.marked() == .abandon(.serverFailed("protocol error: mark in state done")), "no mark follows")
    }

    @Test func aConfirmedBatchIsMarkedWhileTheNextBatchIsUnconfirmed() {
        var machine = Self.granted(batchSize: 2)
        _ = machine.sent()
        _ = machine.fetched(Self.fetched([1, 2]))
        _ = machine.sent()
        #expect(machine.pushAnswered(.pushed) == .receive(.fetch(limit: 2, after: 2)))
        // Batch 1's mark goes out with the fetch of batch 3, before batch 2's push is answered:
        // batch 1 was confirmed, batch 2 is not, so only batch 1 is ever marked.
        #expect(machine.fetched(Self.fetched([3, 4])) == .send([.fetch(limit: 2, after: 4), .mark(ids: [1, 2], scheduled: [])]))
        guard case .push = machine.sent() else {
            Issue.record("expected the push of batch 2")
            return
        }
        #expect(machine.pushAnswered(.unconfirmed("timeout")) == .abandon(.unconfirmed("timeout")))
    }

    // MARK: pages pushed in chunks

    static func chunked(pageSize: Int, batchSize: Int, lingers: Int = 0, overlapsPushes: Bool = false) -> LeaseMachine {
        var machine = LeaseMachine(
            tempo: LeaseTempo(maximumBatches: 10, batchSize: batchSize, carriedLimit: pageSize, pageSize: pageSize, lingers: lingers),
            overlapsPushes: overlapsPushes)
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        _ = machine.claimAnswered(.granted(fence: "0:7", alreadyPushed: []))
        _ = machine.sent()
        return machine
    }

    @Test func pushesAPageInChunksOfTheBatchSizeAndMarksItInOneStatement() {
        var machine = Self.chunked(pageSize: 5, batchSize: 2)
        #expect(machine.pushSize == 2)
        #expect(machine.fetched(ids: [1, 2, 3, 4, 5], available: 5) == .send([.fetch(limit: 5, after: 5)]))
        #expect(machine.sent() == .plan)
        let chunks = [Self.plan([1, 2]), Self.plan([3, 4]), Self.plan([5])]
        #expect(machine.planned(chunks: chunks) == .push(chunks[0], fence: "0:7", record: Self.stamped([1, 2])))
        // Each push's record covers the page's earlier chunks, whose mark has not committed.
        #expect(machine.pushAnswered(.pushed) == .push(chunks[1], fence: "0:7", record: Self.stamped([1, 2, 3, 4])))
        #expect(machine.pushAnswered(.pushed) == .push(chunks[2], fence: "0:7", record: Self.stamped([1, 2, 3, 4, 5])))
        #expect(machine.pushAnswered(.pushed) == .receive(.fetch(limit: 5, after: 5)))
        #expect(machine.fetched(ids: [6], available: 1) == .send([.mark(ids: [1, 2, 3, 4, 5], scheduled: [])]), "one mark for the page")
        #expect(machine.sent() == .plan)
        #expect(machine.planned(chunks: [Self.plan([6])]) == .push(Self.plan([6]), fence: "0:7", record: Self.stamped([1, 2, 3, 4, 5, 6])))
    }

    @Test func aRefusedMiddleChunkLeavesItAndTheRestPendingAndMarksTheChunksBefore() {
        var machine = Self.chunked(pageSize: 6, batchSize: 2)
        #expect(machine.fetched(ids: [1, 2, 3, 4, 5, 6], available: 6) == .send([.fetch(limit: 6, after: 6)]))
        #expect(machine.sent() == .plan)
        let chunks = [Self.plan([1, 2]), Self.plan([3, 4]), Self.plan([5, 6])]
        #expect(machine.planned(chunks: chunks) == .push(chunks[0], fence: "0:7", record: Self.stamped([1, 2])))
        #expect(machine.pushAnswered(.pushed) == .push(chunks[1], fence: "0:7", record: Self.stamped([1, 2, 3, 4])))
        // 3 and 4 are refused: 5 and 6 are not pushed, the fetch in flight is dropped, and only
        // 1 and 2, which Redis has, are marked.
        #expect(machine.pushAnswered(.refused("wrong type")) == .receive(.fetch(limit: 6, after: 6)))
        #expect(machine.fetched(ids: [7, 8], available: 2) == .send([.mark(ids: [1, 2], scheduled: [])]))
        #expect(machine.sent() == .receive(.mark(ids: [1, 2], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
        _ = machine.redisReleased()
        guard let outcome = Self.outcome(machine.leaseReleased()) else { return }
        #expect(outcome.refused == "wrong type")
        #expect(outcome.relayed == 2)
        #expect(outcome.carriedLimit == nil)
    }

    @Test func aFailedChunkAbandonsWithTheEarlierChunksInTheRecord() {
        var machine = Self.chunked(pageSize: 4, batchSize: 2)
        _ = machine.fetched(ids: [1, 2, 3, 4], available: 3)
        #expect(machine.planned(chunks: [Self.plan([1, 2]), Self.plan([3, 4])]) == .push(Self.plan([1, 2]), fence: "0:7", record: Self.stamped([1, 2])))
        _ = machine.pushAnswered(.pushed)
        #expect(machine.ledger.unmarked == Self.stamped([1, 2]))
        #expect(machine.pushAnswered(.unconfirmed("timeout")) == .abandon(.unconfirmed("timeout")))
        #expect(machine.ledger.unmarked == Self.stamped([1, 2]), "the unconfirmed chunk is not taken as pushed")
    }

    @Test func chunksWithNothingToPushAreMarkedWithThePage() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 2, carriedLimit: 4, pageSize: 4))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        _ = machine.claimAnswered(.granted(fence: "0:7", alreadyPushed: [1, 2]))
        _ = machine.sent()
        _ = machine.fetched(ids: [1, 2, 3], available: 3)
        let chunks = [Self.plan([1, 2], alreadyPushed: [1, 2]), Self.plan([3], alreadyPushed: [1, 2])]
        #expect(
            machine.planned(chunks: chunks)
                == .push(chunks[1], fence: "0:7", record: RecordedRows([1: RecordedRows.anyRow, 2: RecordedRows.anyRow, 3: 1_000_000])))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1, 2, 3], scheduled: [])]))
    }

    // MARK: lingering on a drained key

    @Test func aDrainedKeyLingersAndFetchesAgainWithTheLastMarkWhenNotified() {
        var machine = Self.chunked(pageSize: 10, batchSize: 10, lingers: 2)
        #expect(machine.fetched(Self.fetched([1, 2, 3])) == .push(Self.plan([1, 2, 3]), fence: "0:7", record: Self.stamped([1, 2, 3])))
        #expect(machine.pushAnswered(.pushed) == .linger, "nothing in flight: wait for a notification")
        // Notified: the next fetch and the last page's mark go as one group, as in a backlog.
        #expect(machine.lingered(notified: true) == .send([.fetch(limit: 10, after: 3), .mark(ids: [1, 2, 3], scheduled: [])]))
        #expect(machine.sent() == .receive(.fetch(limit: 10, after: 3)))
        #expect(machine.fetched(Self.fetched([4])) == .push(Self.plan([4]), fence: "0:7", record: Self.stamped([1, 2, 3, 4])))
        #expect(machine.pushAnswered(.pushed) == .receive(.mark(ids: [1, 2, 3], scheduled: [])))
        #expect(machine.marked() == .linger)
        // A wake-up that finds nothing: the lingers are used up, so the last mark, then the release.
        #expect(machine.lingered(notified: true) == .send([.fetch(limit: 10, after: 4), .mark(ids: [4], scheduled: [])]))
        _ = machine.sent()
        #expect(machine.fetched(Self.fetched([])) == .receive(.mark(ids: [4], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
        _ = machine.redisReleased()
        #expect(machine.leaseReleased() == .finished({ var o = LeaseMachine.Outcome(handled: 4, relayed: 4); o.fence = "0:7"; return o }()))
    }

    @Test func aQuietLingerMarksTheLastPageAndReleasesTheLease() {
        var machine = Self.chunked(pageSize: 10, batchSize: 10, lingers: 5)
        _ = machine.fetched(Self.fetched([1]))
        #expect(machine.pushAnswered(.pushed) == .linger)
        #expect(machine.ledger.unmarked == Self.stamped([1]), "the record covers the page while the lease lingers")
        #expect(machine.lingered(notified: false) == .send([.mark(ids: [1], scheduled: [])]))
        #expect(machine.sent() == .receive(.mark(ids: [1], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
    }

    @Test func aStopDuringALingerMarksAndReleasesTheLease() {
        var machine = Self.chunked(pageSize: 10, batchSize: 10, lingers: 5)
        _ = machine.fetched(Self.fetched([1]))
        #expect(machine.pushAnswered(.pushed) == .linger)
        machine.requestStop()
        #expect(machine.lingered(notified: true) == .send([.mark(ids: [1], scheduled: [])]), "no fetch after a stop")
        _ = machine.sent()
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))

        var stopped = Self.chunked(pageSize: 10, batchSize: 10, lingers: 5)
        _ = stopped.fetched(Self.fetched([1]))
        stopped.requestStop()
        #expect(stopped.pushAnswered(.pushed) == .send([.mark(ids: [1], scheduled: [])]), "a stop before the linger skips it")
    }

    @Test func aFailureDuringALingerAbandonsTheLeaseWithItsRecord() {
        var machine = Self.chunked(pageSize: 10, batchSize: 10, lingers: 5)
        _ = machine.fetched(Self.fetched([1]))
        #expect(machine.pushAnswered(.pushed) == .linger)
        #expect(machine.failed(.serverFailed("gone")) == .abandon(.serverFailed("gone")))
        #expect(machine.ledger.unmarked == Self.stamped([1]), "the next holder's claim finds row 1 in the record")
        #expect(machine.lingered(notified: true) == .abandon(.serverFailed("protocol error: lingered in state done")))
    }

    @Test func aRefusedPushNeverLingers() {
        var machine = Self.chunked(pageSize: 10, batchSize: 10, lingers: 5)
        _ = machine.fetched(Self.fetched([1]))
        #expect(machine.pushAnswered(.refused("wrong type")) == .releaseRedis(fence: "0:7", remaining: []))
    }

    @Test func oneBatchPerLeaseNeverLingers() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 1, batchSize: 10, carriedLimit: 10, lingers: 5))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        _ = machine.claimAnswered(.granted(fence: "0:7", alreadyPushed: []))
        _ = machine.sent()
        _ = machine.fetched(Self.fetched([1]))
        #expect(machine.pushAnswered(.pushed) == .send([.mark(ids: [1], scheduled: [])]))
        _ = machine.sent()
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
    }

    @Test func anUnconfirmedClaimAbandonsBeforeAnythingIsFetched() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        // The record the claim read may not survive a failover: acting on it could mark rows
        // whose jobs the promoted replica never got.
        #expect(machine.claimAnswered(.unconfirmed("0 of 1 replicas")) == .abandon(.unconfirmed("0 of 1 replicas")))
    }

    /// A claim Redis refused (the fence key holds the wrong type) wrote nothing: the lock goes
    /// back, nothing is released in Redis, and the key waits as a refused one.
    @Test func aRefusedClaimReleasesOnlyTheLock() {
        var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
        _ = machine.start()
        _ = machine.leaseAnswered(xid: 7)
        #expect(machine.claimAnswered(.refused("Redis key 'f' holds a list")) == .releaseLease)
        guard let outcome = Self.outcome(machine.leaseReleased()) else { return }
        #expect(outcome.refused == "Redis key 'f' holds a list")
        #expect(outcome.handled == 0)
    }

    /// A group's fetch cut before this key returns no rows though rows may be pending: the rows an
    /// earlier holder pushed stay recorded, and the lease ends without a batch.
    @Test func anEmptyFetchWithRowsAvailableKeepsTheEarlierHoldersRecord() {
        var machine = Self.granted(maximumBatches: 1, alreadyPushed: Self.stamped([3, 4]))
        _ = machine.sent()
        #expect(machine.fetched(ids: [], available: 10) == .releaseRedis(fence: "0:7", remaining: Self.stamped([3, 4])))
        var drained = Self.granted(maximumBatches: 1, alreadyPushed: Self.stamped([3, 4]))
        _ = drained.sent()
        #expect(drained.fetched(ids: [], available: 0) == .releaseRedis(fence: "0:7", remaining: []), "nothing pending: the rows are marked")
    }

    /// A fence key someone set to a value that is not a fence: the key waits, refused, instead of
    /// the lease being taken for lost (which would abandon a whole group).
    @Test func aFenceThatIsNotAFenceIsARefusal() {
        for value in ["garbage", "1:2:3", ":5", "5:", "٣:4"] {
            var machine = LeaseMachine(tempo: LeaseTempo(maximumBatches: 10, batchSize: 10))
            _ = machine.start()
            _ = machine.leaseAnswered(xid: 7)
            #expect(machine.claimAnswered(.fenced(newerToken: value)) == .releaseLease, "\(value)")
            guard let outcome = Self.outcome(machine.leaseReleased()) else { continue }
            #expect(outcome.refused?.contains("which is not a fence") == true)
        }
        #expect(FencedPush.xid(inFence: "3:9000") == 9000)
        #expect(FencedPush.xid(inFence: "9000") == 9000)
    }

    // MARK: a page's pushes sent without waiting (the daemon's single leases)

    /// As ``chunked(pageSize:batchSize:lingers:overlapsPushes:)``, overlapping pushes.
    static func overlapping(batchSize: Int = 2, pageSize: Int? = nil) -> LeaseMachine {
        chunked(pageSize: pageSize ?? batchSize, batchSize: batchSize, overlapsPushes: true)
    }

    /// While Redis runs page k's pushes, page k+1 is received and planned and page k+2 fetched;
    /// page k is marked only once their answers are read, and page k+1 pushed only after that.
    @Test func thePushOfAPageOverlapsTheNextPageButItsMarkWaitsForItsAnswer() {
        var machine = Self.overlapping()
        #expect(machine.fetched(ids: [1, 2], available: 2) == .send([.fetch(limit: 2, after: 2)]))
        #expect(machine.sent() == .plan)
        #expect(
            machine.planned(Self.plan([1, 2]))
                == .sendPushes([Self.plan([1, 2])], fence: "0:7", records: [.replace(earlier: [], pushed: Self.stamped([1, 2]))]))
        #expect(machine.isAwaitingPush)
        #expect(machine.pushSent() == .receive(.fetch(limit: 2, after: 2)), "the next page comes in while Redis works")
        // Page 2: its next fetch goes at once, without page 1's mark, which needs page 1's answer.
        #expect(machine.fetched(ids: [3, 4], available: 2) == .send([.fetch(limit: 2, after: 4)]))
        #expect(machine.sent() == .plan)
        #expect(machine.planned(Self.plan([3, 4])) == .receivePush, "page 2 waits for page 1's answer")
        #expect(machine.pushesAnswered([.pushed]) == .send([.mark(ids: [1, 2], scheduled: [])]))
        #expect(!machine.isAwaitingPush)
        #expect(
            machine.sent()
                == .sendPushes([Self.plan([3, 4])], fence: "0:7", records: [.replace(earlier: Self.stamped([1, 2]), pushed: Self.stamped([3, 4]))]),
            "the record covers page 1")
        #expect(machine.pushSent() == .receive(.fetch(limit: 2, after: 4)))
        // Page 3 is the last: nothing more to fetch; the marks in flight come in while Redis works.
        #expect(machine.fetched(ids: [5], available: 1) == .plan)
        #expect(machine.planned(Self.plan([5])) == .receivePush)
        #expect(machine.pushesAnswered([.pushed]) == .send([.mark(ids: [3, 4], scheduled: [])]))
        #expect(
            machine.sent()
                == .sendPushes([Self.plan([5])], fence: "0:7", records: [.replace(earlier: Self.stamped([1, 2, 3, 4]), pushed: Self.stamped([5]))]))
        #expect(machine.pushSent() == .receive(.mark(ids: [1, 2], scheduled: [])))
        #expect(machine.marked() == .receive(.mark(ids: [3, 4], scheduled: [])))
        #expect(machine.marked() == .receivePush)
        #expect(machine.pushesAnswered([.pushed]) == .send([.mark(ids: [5], scheduled: [])]))
        #expect(machine.sent() == .receive(.mark(ids: [5], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []))
    }

    /// A page's chunks go down one pipeline: the first push writes the whole record, each later
    /// one appends its rows and runs only if the one before it landed (the record ends with its
    /// last row); a chunk of rows pushed before is only marked.
    @Test func aPagesChunksArePipelinedEachAfterTheOneBefore() {
        var machine = Self.overlapping(batchSize: 2, pageSize: 6)
        #expect(machine.fetched(ids: [1, 2, 3, 4, 5, 6], available: 5) == .plan)
        let chunks = [Self.plan([1, 2]), Self.plan([3], alreadyPushed: Self.stamped([3])), Self.plan([4, 5]), Self.plan([6])]
        #expect(
            machine.planned(chunks: chunks)
                == .sendPushes(
                    [chunks[0], chunks[2], chunks[3]], fence: "0:7",
                    records: [
                        .replace(earlier: [], pushed: Self.stamped([1, 2])),
                        .append(pushed: Self.stamped([4, 5]), after: Self.stamped([1, 2])),
                        .append(pushed: Self.stamped([6]), after: Self.stamped([4, 5])),
                    ]))
        #expect(machine.pushSent() == .receivePush)
        #expect(machine.pushesAnswered([.pushed, .pushed, .pushed]) == .send([.mark(ids: [1, 2, 3, 4, 5, 6], scheduled: [])]))
    }

    /// A refused push of a pipeline: nothing of it or of the later chunks (refused in turn, or
    /// holding rows pushed before) is marked or recorded, the page fetched meanwhile stays pending
    /// (and uncounted), and the earlier chunks, which Redis has, are marked.
    @Test func aRefusedPushInFlightMarksOnlyTheChunksBeforeIt() {
        var machine = Self.overlapping(batchSize: 2, pageSize: 4)
        #expect(machine.fetched(ids: [1, 2, 3, 4], available: 4) == .send([.fetch(limit: 4, after: 4)]))
        #expect(machine.sent() == .plan)
        #expect(
            machine.planned(chunks: [Self.plan([1, 2]), Self.plan([3, 4])])
                == .sendPushes(
                    [Self.plan([1, 2]), Self.plan([3, 4])], fence: "0:7",
                    records: [.replace(earlier: [], pushed: Self.stamped([1, 2])), .append(pushed: Self.stamped([3, 4]), after: Self.stamped([1, 2]))]))
        #expect(machine.pushSent() == .receive(.fetch(limit: 4, after: 4)))
        #expect(machine.fetched(ids: [5, 6], available: 2) == .plan)
        #expect(machine.planned(chunks: [Self.plan([5, 6])]) == .receivePush)
        #expect(machine.pushesAnswered([.pushed, .refused("wrong type")]) == .send([.mark(ids: [1, 2], scheduled: [])]))
        #expect(machine.sent() == .receive(.mark(ids: [1, 2], scheduled: [])))
        #expect(machine.marked() == .releaseRedis(fence: "0:7", remaining: []), "3 to 6 are neither marked nor recorded")
        _ = machine.redisReleased()
        guard let outcome = Self.outcome(machine.leaseReleased()) else { return }
        #expect(outcome.refused == "wrong type")
        #expect(outcome.relayed == 2)
        #expect(outcome.handled == 4, "rows 5 and 6 were never handled")

        // The first push refused: the rest of the pipeline was refused after it; nothing is marked.
        var first = Self.overlapping(batchSize: 2, pageSize: 4)
        _ = first.fetched(ids: [1, 2, 3, 4], available: 3)
        _ = first.planned(chunks: [Self.plan([1, 2]), Self.plan([3, 4])])
        #expect(first.pushSent() == .receivePush)
        #expect(first.pushesAnswered([.refused("wrong type"), .refused("the push before it did not land")]) == .releaseRedis(fence: "0:7", remaining: []))
        _ = first.redisReleased()
        #expect(Self.outcome(first.leaseReleased())?.refused == "wrong type")

        // A push taken after a refused one breaks the protocol's premise: the lease is abandoned.
        var broken = Self.overlapping(batchSize: 2, pageSize: 4)
        _ = broken.fetched(ids: [1, 2, 3, 4], available: 3)
        _ = broken.planned(chunks: [Self.plan([1, 2]), Self.plan([3, 4])])
        _ = broken.pushSent()
        #expect(broken.pushesAnswered([.refused("wrong type"), .pushed]) == .abandon(.serverFailed("Redis took a push after refusing the one before it")))
    }

    /// A push in flight whose answer says too few replicas took it, or that fails: the lease is
    /// abandoned with nothing of that page marked.
    @Test func anUnconfirmedOrFailedPushInFlightAbandonsTheLease() {
        for answer in [LeaseMachine.Push.unconfirmed("0 of 1 replicas"), nil] {
            var machine = Self.overlapping()
            _ = machine.fetched(ids: [1, 2], available: 2)
            _ = machine.sent()
            _ = machine.planned(Self.plan([1, 2]))
            #expect(machine.pushSent() == .receive(.fetch(limit: 2, after: 2)))
            #expect(machine.isAwaitingPush, "the driver knows a reply is unread")
            if let answer {
                _ = machine.fetched(ids: [3], available: 1)
                #expect(machine.planned(Self.plan([3])) == .receivePush)
                #expect(machine.pushesAnswered([answer]) == .abandon(.unconfirmed("0 of 1 replicas")))
            } else {
                #expect(machine.failed(.serverFailed("gone")) == .abandon(.serverFailed("gone")))
            }
        }
    }

    /// Pages with rows for the dead-letter table, and pages pushed in a stop, wait for each answer.
    @Test func aPageWithRejectionsIsPushedAndAnsweredAtOnce() {
        var machine = Self.overlapping()
        let batch = Self.fetched([1, 2], bad: [2])
        #expect(machine.fetched(batch) == .send([.fetch(limit: 2, after: 2)]))
        #expect(machine.sent() == .push(batch.plan, fence: "0:7", record: Self.stamped([1])))
    }
}
