import Logging
import OutboxRelay
import OutboxRelayIO

/// Drives a ``LeaseGroup``: one batch of each of many split keys, every step carried out for all
/// the keys waiting in it with one statement or one Redis pipeline. The group decides; this only
/// performs, as ``LeaseRun/run(_:skipped:tempos:)`` does for one key.
extension LeaseRun {
    /// Relays the first batch of each of `keys` (named keys without skipped rows) under one group
    /// of leases; keys leased elsewhere are passed over. Outcomes in the order of `keys`.
    func runGroup(_ keys: [SplitKey], skipped: inout SkippedRows, tempos: inout [SplitKey: Int]) throws -> [Outcome] {
        let queries = configuration.queries
        let leases = keys.map { LeaseKey(table: resolvedTable, format: queries.leaseFormat, splitKey: $0) }
        let fences = leases.map { FencedPush.Keys(lease: $0, cluster: cluster, namespace: configuration.keys.namespace) }
        var group = LeaseGroup(keys: keys, batchSize: configuration.batchSize, deadLetterProblem: try deadLetterProblem())
        var locked = Set<Int>()
        defer {
            if !locked.isEmpty, postgres.isHealthy { _ = try? postgres.query(queries.releaseLeases(locked.sorted().map { leases[$0] })) }
        }
        var fetchedRows: [Int: [OutboxRow]] = [:]
        let started = telemetry.monotonicMicros()
        while true {
            if stop.isStopRequested { group.requestStop() }
            do {
                switch group.nextStep() {
                case .finished(let outcomes):
                    for (key, outcome) in zip(keys, outcomes) {
                        finished(outcome, key: key, tempos: &tempos, started: started, metadata: ["outbox.split_key": "\(key)"], logRelayed: false)
                    }
                    let relayed = outcomes.reduce(0) { $0 + $1.relayed }
                    if relayed > 0 {
                        logger.info(
                            "relayed jobs",
                            metadata: [
                                "outbox.jobs": "\(relayed)", "outbox.split_keys": "\(outcomes.count { $0.relayed > 0 })",
                                "outbox.duration_ms": "\((telemetry.monotonicMicros() - started) / 1000)",
                            ])
                    }
                    return outcomes
                case .abandon(let failure):
                    throw Self.error(failure)
                case .perform(let phase, let members):
                    try perform(phase, members, group: &group, leases: leases, fences: fences, locked: &locked, fetchedRows: &fetchedRows, skipped: &skipped)
                }
            } catch {
                // The group is abandoned with its records: the next holders' claims learn what
                // Redis has. The connection that failed is dropped by the caller.
                _ = group.failed(.serverFailed("\(error)"))
                throw error
            }
        }
    }

    // The steps read the members' actions, which the group set for exactly this phase.
    private func perform(
        _ phase: LeaseGroup.Phase, _ members: [Int], group: inout LeaseGroup, leases: [LeaseKey], fences: [FencedPush.Keys],
        locked: inout Set<Int>, fetchedRows: inout [Int: [OutboxRow]], skipped: inout SkippedRows
    ) throws {
        let queries = configuration.queries
        let keys = group.keys
        switch phase {
        case .tryLease:
            let rows = try postgres.query(queries.tryLeases(members.map { leases[$0] }))
            guard rows.count == members.count else { throw RelayProblem.unexpectedReply("the group's leases", "\(rows.count) rows") }
            for (row, index) in members.enumerated() {
                let xid = rows.int64(row, 0)
                if xid != nil { locked.insert(index) }
                telemetry.leaseAttempt(keys[index], acquired: xid != nil)
                group.answer(index) { $0.leaseAnswered(xid: xid) }
            }
        case .claim:
            let claims = try redis.claim(members.map { index in
                guard case .claim(let xid, let rewound) = group.action(of: index) else { preconditionFailure("not a claim") }
                return (fences[index], xid, rewound)
            })
            for (claim, index) in zip(claims, members) { group.answer(index) { $0.claimAnswered(claim) } }
        case .askNextTransactionID:
            for index in members {
                guard let next = try postgres.query(OutboxQueries.nextTransactionID).int64(0, 0) else {
                    throw RelayProblem.unexpectedReply("next transaction id", "NULL")
                }
                group.answer(index) { $0.nextTransactionID(next) }
            }
        case .fetch:
            let limits = members.map { index -> Int in
                guard case .receive(.fetch(let limit, nil)) = group.action(of: index) else { preconditionFailure("not a first fetch") }
                return limit
            }
            let rows = try postgres.query(
                queries.fetchFirstBatches(members.map { keys[$0].value ?? "" }, limits: limits, maxBytes: configuration.maxBatchBytes),
                decoding: { row in (position: Int(row.int64(0)!) - 1, row: Self.fetchedRow(row, from: 1)) })
            var byMember = Array(repeating: [(OutboxRow, Int64)](), count: members.count)
            for row in rows { byMember[row.position].append(row.row) }
            for (position, index) in members.enumerated() {
                let batch = byMember[position]
                let available = OutboxQueries.pendingWithinLimit(
                    returned: batch.count, limit: limits[position], lastRunningBytes: batch.last?.1, maxBytes: configuration.maxBatchBytes)
                fetchedRows[index] = batch.map(\.0)
                group.answer(index) { $0.fetched(ids: batch.map(\.0.id), available: available) }
            }
        case .plan:
            for index in members {
                let plan = BatchPlan(
                    rows: fetchedRows.removeValue(forKey: index) ?? [], encoder: configuration.sidekiq, nowMicros: nowMicros(),
                    alreadyPushed: group.alreadyPushed(of: index), makeJID: makeJID)
                group.answer(index) { $0.planned(plan) }
            }
        case .push:
            let pushes = try redis.push(
                members.map { index in
                    guard case .push(let plan, let fence, let record) = group.action(of: index) else { preconditionFailure("not a push") }
                    return (plan, fences[index], fence, record)
                }, sidekiq: configuration.keys)
            for (push, index) in zip(pushes, members) { group.answer(index) { $0.pushAnswered(push) } }
        case .skip:
            for index in members {
                guard case .skip(let rejections, let reason) = group.action(of: index) else { preconditionFailure("not a skip") }
                skip(rejections, because: reason, key: keys[index], skipped: &skipped)
                group.answer(index) { $0.skipped() }
            }
        case .deadLetter:
            let rejections = members.map { index -> [BatchPlan.Rejection] in
                guard case .receive(.deadLetter(let rejections)) = group.action(of: index) else { preconditionFailure("not a dead letter") }
                return rejections
            }
            let result = try deadLetter(rejections.flatMap { $0 })
            for (index, memberRejections) in zip(members, rejections) {
                if result == .moved { reportDeadLettered(memberRejections, key: keys[index]) }
                group.answer(index) { $0.deadLettered(result) }
            }
        case .mark:
            let marks = members.map { index -> (ids: [Int64], scheduled: [Int64]) in
                guard case .receive(.mark(let ids, let scheduled)) = group.action(of: index) else { preconditionFailure("not a mark") }
                return (ids, scheduled)
            }
            let before = telemetry.monotonicMicros()
            _ = try postgres.query(queries.markEnqueued(marks.flatMap(\.ids), scheduled: marks.flatMap(\.scheduled)))
            let took = telemetry.monotonicMicros() - before
            for (index, mark) in zip(members, marks) {
                telemetry.batchRelayed(keys[index], jobs: mark.ids.count, durationMicros: took)
                group.answer(index) { $0.marked() }
            }
        case .releaseRedis:
            try redis.release(members.map { index in
                guard case .releaseRedis(let fence, let remaining) = group.action(of: index) else { preconditionFailure("not a release") }
                return (fences[index], fence, remaining)
            })
            for index in members { group.answer(index) { $0.redisReleased() } }
        case .releaseLease:
            _ = try postgres.query(queries.releaseLeases(members.map { leases[$0] }))
            locked.subtract(members)
            for index in members { group.answer(index) { $0.leaseReleased() } }
        }
    }
}

