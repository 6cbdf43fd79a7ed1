import OutboxRelay
import Testing

/// Keys leased together, step by step: each step names the phase and exactly the members waiting
/// in it, and each member's machine keeps its own rules.
@Suite struct LeaseGroupTests {
    typealias Machine = LeaseMachineTests

    static func plan(_ ids: [Int64], alreadyPushed: RecordedRows = []) -> BatchPlan { Machine.plan(ids, alreadyPushed: alreadyPushed) }

    @Test func everyPhaseRunsOnceForAllMembersWaitingInIt() {
        var group = LeaseGroup(keys: [.named("a"), .named("b"), .named("c")], batchSize: 100)
        #expect(group.nextStep() == .perform(.tryLease, [0, 1, 2]))
        group.answer(0) { $0.leaseAnswered(xid: 9) }
        group.answer(1) { $0.leaseAnswered(xid: nil) }
        group.answer(2) { $0.leaseAnswered(xid: 9) }

        #expect(group.nextStep() == .perform(.claim, [0, 2]))
        #expect(group.action(of: 0) == .claim(xid: 9, rewound: nil))
        group.answer(0) { $0.claimAnswered(.granted(fence: "0:9", alreadyPushed: [])) }
        group.answer(2) { $0.claimAnswered(.granted(fence: "0:9", alreadyPushed: Machine.stamped([31]))) }

        // The fetches were sent; the group asks for their results together.
        #expect(group.nextStep() == .perform(.fetch, [0, 2]))
        #expect(group.action(of: 0) == .receive(.fetch(limit: LeaseTempo.firstLimit, after: nil)))
        group.answer(0) { $0.fetched(ids: [1, 2], available: 2) }
        group.answer(2) { $0.fetched(ids: [31, 32], available: 2) }

        #expect(group.nextStep() == .perform(.plan, [0, 2]))
        #expect(group.alreadyPushed(of: 2) == Machine.stamped([31]))
        group.answer(0) { $0.planned(Self.plan([1, 2])) }
        group.answer(2) { $0.planned(Self.plan([31, 32], alreadyPushed: Machine.stamped([31]))) }

        #expect(group.nextStep() == .perform(.push, [0, 2]))
        guard case .push(let pushed, "0:9", let record) = group.action(of: 2) else {
            Issue.record("not a push: \(group.action(of: 2))")
            return
        }
        #expect(pushed.pushedIDs == [32], "what an earlier holder pushed is only marked")
        #expect(record.ids.sorted() == [31, 32])
        group.answer(0) { $0.pushAnswered(.pushed) }
        group.answer(2) { $0.pushAnswered(.refused("queue:q holds a string")) }

        // Member 2's batch was refused: only member 0 marks, then both release.
        #expect(group.nextStep() == .perform(.mark, [0]))
        #expect(group.action(of: 0) == .receive(.mark(ids: [1, 2], scheduled: [])))
        group.answer(0) { $0.marked() }
        #expect(group.nextStep() == .perform(.releaseRedis, [0, 2]))
        #expect(group.action(of: 2) == .releaseRedis(fence: "0:9", remaining: Machine.stamped([31])), "the inherited row stays recorded")
        group.answer(0) { $0.redisReleased() }
        group.answer(2) { $0.redisReleased() }
        #expect(group.nextStep() == .perform(.releaseLease, [0, 2]))
        group.answer(0) { $0.leaseReleased() }
        group.answer(2) { $0.leaseReleased() }

        guard case .finished(let outcomes) = group.nextStep() else {
            Issue.record("not finished")
            return
        }
        #expect(outcomes.map(\.leased) == [true, false, true])
        #expect(outcomes.map(\.relayed) == [2, 0, 0])
        #expect(outcomes[2].refused == "queue:q holds a string")
    }

    @Test func aFullFirstBatchCarriesTheKeyOverToALeaseOfItsOwn() {
        var group = LeaseGroup(keys: [.named("a"), .named("b")], batchSize: 100)
        _ = group.nextStep()
        for index in 0..<2 { group.answer(index) { $0.leaseAnswered(xid: 9) } }
        _ = group.nextStep()
        for index in 0..<2 { group.answer(index) { $0.claimAnswered(.granted(fence: "0:9", alreadyPushed: [])) } }
        _ = group.nextStep()
        let full = Array(Int64(1)...Int64(LeaseTempo.firstLimit))
        group.answer(0) { $0.fetched(ids: full, available: full.count) }
        group.answer(1) { $0.fetched(ids: [], available: 0) }
        // Member 1 had nothing: it releases while member 0 goes on; no second fetch for either.
        #expect(group.nextStep() == .perform(.plan, [0]))
        group.answer(0) { $0.planned(Self.plan(full)) }
        #expect(group.nextStep() == .perform(.push, [0]))
        group.answer(0) { $0.pushAnswered(.pushed) }
        #expect(group.nextStep() == .perform(.mark, [0]))
        group.answer(0) { $0.marked() }
        #expect(group.nextStep() == .perform(.releaseRedis, [0, 1]))
        for index in 0..<2 { group.answer(index) { $0.redisReleased() } }
        #expect(group.nextStep() == .perform(.releaseLease, [0, 1]))
        for index in 0..<2 { group.answer(index) { $0.leaseReleased() } }
        guard case .finished(let outcomes) = group.nextStep() else {
            Issue.record("not finished")
            return
        }
        #expect(outcomes[0].carriedLimit == LeaseTempo.firstLimit * 4, "a backlog: leased alone next, from a bigger batch")
        #expect(outcomes[1].carriedLimit == nil)
    }

    @Test func aFailedMemberAbandonsTheGroup() {
        var group = LeaseGroup(keys: [.named("a"), .named("b")], batchSize: 100)
        _ = group.nextStep()
        for index in 0..<2 { group.answer(index) { $0.leaseAnswered(xid: 9) } }
        _ = group.nextStep()
        group.answer(0) { $0.claimAnswered(.granted(fence: "0:9", alreadyPushed: [])) }
        group.answer(1) { $0.claimAnswered(.unconfirmed("0 of 1 replicas")) }
        #expect(group.nextStep() == .abandon(.unconfirmed("0 of 1 replicas")))
    }

    @Test func aStopBeforeTheFetchReleasesEveryMember() {
        var group = LeaseGroup(keys: [.named("a"), .named("b")], batchSize: 100)
        _ = group.nextStep()
        for index in 0..<2 { group.answer(index) { $0.leaseAnswered(xid: 9) } }
        _ = group.nextStep()
        group.requestStop()
        for index in 0..<2 { group.answer(index) { $0.claimAnswered(.granted(fence: "0:9", alreadyPushed: [])) } }
        #expect(group.nextStep() == .perform(.releaseRedis, [0, 1]))
    }
}
