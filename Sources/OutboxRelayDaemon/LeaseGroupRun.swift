import Logging
import OutboxRelay
import OutboxRelayIO

/// Drives ``LeaseGroup``s: one batch of each of many split keys, every step carried out for all
/// the keys of a group waiting in it with one statement or one Redis pipeline. Several groups are
/// in flight: each group's statement goes down the PostgreSQL pipeline as soon as the group is
/// ready for it, and while PostgreSQL works through them this process carries out the other
/// groups' Redis pipelines and plans, so neither server waits for the other. The groups decide;
/// this only performs, as ``LeaseRun/run(_:skipped:tempos:)`` does for one key.
extension LeaseRun {
    /// Relays the first batch of each of `keys` (named keys without skipped rows) in groups of
    /// `groupSize`; keys leased elsewhere are passed over. Outcomes in the order of `keys` (not
    /// leased for keys a stop left untouched).
    func runGroups(_ keys: [SplitKey], groupSize: Int, skipped: inout SkippedRows, tempos: inout [SplitKey: Int]) throws -> [Outcome] {
        let deadLetterProblem = try deadLetterProblem()
        // Statements sent while the pipeline holds others must be prepared before.
        let queries = configuration.queries
        for statement in [
            queries.tryLeases([]), queries.fetchFirstBatches([], limits: [], maxBytes: 1), queries.markEnqueued([]), queries.releaseLeases([]),
        ] {
            try postgres.prepareAhead(statement)
        }
        // Two keys of one group must not share a lease (their locks would both be granted to this
        // session, their fences and records would be one): a key whose lease hash collides with
        // an earlier one's is left out, and leased alone after the groups.
        var leaseValues = Set<Int64>()
        let grouped = keys.filter { leaseValues.insert(LeaseKey(table: resolvedTable, format: queries.leaseFormat, splitKey: $0).value).inserted }
        let chunks = stride(from: 0, to: grouped.count, by: groupSize).map { Array(grouped[$0..<min(grouped.count, $0 + groupSize)]) }
        var waiting = chunks.indices[...]
        var flights: [GroupFlight] = []
        // Per chunk, once its group finished (groups finish in any order).
        var outcomes: [Int: [Outcome]] = [:]
        defer {
            // After a failure with a statement in flight, its result comes first; then every lock
            // still held is given back (the records stay for the next holders' claims).
            while postgres.isAwaitingResults { _ = try? postgres.receiveNext() }
            let held = flights.flatMap { flight in flight.locked.map { flight.leases[$0] } }
            if !held.isEmpty, postgres.isHealthy { _ = try? postgres.query(configuration.queries.releaseLeases(held)) }
        }
        // Chunks whose flight has a statement in PostgreSQL's pipeline, or a call in Redis's, oldest
        // first: results and replies come back in this order.
        var sent: [Int] = []
        var sentToRedis: [Int] = []
        var arrivals = ArrivalOrder()
        while true {
            if stop.isStopRequested {
                waiting = waiting[waiting.endIndex...]
                for index in flights.indices { flights[index].group.requestStop() }
            }
            while flights.count < Self.flightsInAir, let chunk = waiting.popFirst() {
                flights.append(GroupFlight(chunks[chunk], chunk: chunk, run: self, deadLetterProblem: deadLetterProblem))
            }
            guard !flights.isEmpty else { break }
            // Each flight's next step; a finished flight leaves, a failed one fails all.
            var index = 0
            var anyFinished = false
            while index < flights.count {
                switch flights[index].nextStep() {
                case .finished(let finished):
                    report(finished, keys: flights[index].group.keys, started: flights[index].started, tempos: &tempos)
                    outcomes[flights[index].chunk] = finished
                    flights.remove(at: index)
                    anyFinished = true
                case .abandon(let failure):
                    throw Self.error(failure)
                case .perform:
                    index += 1
                }
            }
            // The next group starts before a step runs.
            if anyFinished { continue }
            do {
                // Every statement that is ready goes down the pipeline now.
                for index in flights.indices where !flights[index].isSent && flights[index].waitsForStatement {
                    try flights[index].sendPostgres(self)
                    sent.append(flights[index].chunk)
                }
                // And every Redis call that is ready.
                for index in flights.indices where !flights[index].isSent && flights[index].waitsForRedis {
                    try flights[index].sendRedis(self)
                    sentToRedis.append(flights[index].chunk)
                }
                if let index = flights.firstIndex(where: { $0.waitsForPlan }) {
                    // Both servers work through what they were sent meanwhile.
                    try flights[index].perform(self, skipped: &skipped)
                } else if !sentToRedis.isEmpty || !sent.isEmpty {
                    // Whichever server answered first: blocking on one while the other's answer
                    // waits would leave that server idle (and this process too).
                    let choice = try arrivals.next(
                        redisWaits: !sentToRedis.isEmpty, postgresWaits: !sent.isEmpty, redisHasBytes: { redis.connection.hasUnreadBytes },
                        postgresReady: { try postgres.isResultReady() })
                    // The flight whose call was sent first: answers come back in that order.
                    func oldest(_ chunks: inout [Int]) -> Int {
                        let chunk = chunks.removeFirst()
                        guard let index = flights.firstIndex(where: { $0.chunk == chunk }) else { preconditionFailure("no flight sent it") }
                        return index
                    }
                    switch choice {
                    case .redis:
                        try flights[oldest(&sentToRedis)].receiveRedis(self)
                    case .postgres:
                        try flights[oldest(&sent)].receivePostgres(self)
                    case .wait:
                        let ready = SocketReadiness.waitForInput([redis.connection.descriptor, postgres.socket], milliseconds: Self.arrivalWaitMillis)
                        arrivals.waited(withInput: !ready.isEmpty)
                    }
                } else if let index = flights.firstIndex(where: { !$0.isSent }) {
                    // Asking for the next transaction id, with nothing in either pipeline.
                    try flights[index].perform(self, skipped: &skipped)
                }
            } catch {
                // The groups are abandoned with their records: the next holders' claims learn what
                // Redis has. The connection that failed is dropped by the caller.
                for index in flights.indices { _ = flights[index].group.failed(.serverFailed("\(error)")) }
                throw error
            }
        }
        // Keys a stop left untouched are reported as keys leased elsewhere: nothing happened to them.
        var untouched = Outcome()
        untouched.leased = false
        var byKey: [SplitKey: Outcome] = [:]
        for chunk in chunks.indices {
            for (key, outcome) in zip(chunks[chunk], outcomes[chunk] ?? Array(repeating: untouched, count: chunks[chunk].count)) {
                byKey[key] = outcome
            }
        }
        // A key left out of the groups is leased alone next, as one with a backlog.
        var alone = untouched
        alone.carriedLimit = stop.isStopRequested ? nil : LeaseTempo.firstLimit
        return keys.map { byKey[$0] ?? alone }
    }

    /// The longest wait for either server before ``ArrivalOrder`` is asked again (TLS may hold a
    /// record that the socket no longer shows).
    static let arrivalWaitMillis: Int32 = 50

    /// Groups in flight at once: enough that PostgreSQL and Redis both have work queued while this
    /// process plans another group (20,000 keys: 3 groups 34,800-38,900 jobs/s, 6 groups
    /// 43,700-44,100, 10 groups 46,500, alternating runs; later, with a reader session, 8 groups
    /// beat 6 in 9 of 10 alternating runs, median 60,300 against 56,700). Each group holds up to
    /// 128 advisory locks, so a relay holds up to 1,024: PostgreSQL's shared lock table holds
    /// 6,400 by default.
    static let flightsInAir = 8

    private func report(_ outcomes: [Outcome], keys: [SplitKey], started: Int64, tempos: inout [SplitKey: Int]) {
        for (key, outcome) in zip(keys, outcomes) {
            finished(outcome, key: key, tempos: &tempos, started: started, metadata: ["outbox.split_key": "\(key)"], logRelayed: false)
        }
        let relayed = outcomes.reduce(0) { $0 + $1.relayed }
        guard relayed > 0 else { return }
        logger.info(
            "relayed jobs",
            metadata: [
                "outbox.jobs": "\(relayed)", "outbox.split_keys": "\(outcomes.count { $0.relayed > 0 })",
                "outbox.duration_ms": "\((telemetry.monotonicMicros() - started) / 1000)",
            ])
    }
}

/// One group in flight: its ``LeaseGroup``, the locks it holds, the rows it fetched, and the step
/// it waits to have carried out.
struct GroupFlight {
    var group: LeaseGroup
    let leases: [LeaseKey]
    let fences: [FencedPush.Keys]
    var locked = Set<Int>()
    var fetchedRows: [Int: [OutboxRow]] = [:]
    let started: Int64
    /// Which of the run's chunks of keys this group leases.
    let chunk: Int
    /// The step to carry out next; nil once carried out.
    private(set) var step: LeaseGroup.Step?
    /// Whether the step's statement or Redis call is sent, its result not received yet.
    private(set) var isSent = false
    /// Replies to read for the Redis call sent.
    private var redisReplies = 0

    init(_ keys: [SplitKey], chunk: Int, run: LeaseRun, deadLetterProblem: String?) {
        self.chunk = chunk
        let queries = run.configuration.queries
        leases = keys.map { LeaseKey(table: run.resolvedTable, format: queries.leaseFormat, splitKey: $0) }
        fences = leases.map { FencedPush.Keys(lease: $0, cluster: run.cluster, namespace: run.configuration.keys.namespace) }
        group = LeaseGroup(keys: keys, batchSize: run.configuration.batchSize, deadLetterProblem: deadLetterProblem)
        started = run.telemetry.monotonicMicros()
    }

    mutating func nextStep() -> LeaseGroup.Step {
        if let step { return step }
        let next = group.nextStep()
        step = next
        return next
    }

    /// Phases that are one statement, which can run while this process does something else.
    static func isStatement(_ phase: LeaseGroup.Phase) -> Bool {
        switch phase {
        case .tryLease, .fetch, .deadLetter, .mark, .releaseLease: true
        default: false
        }
    }

    /// Whether the step is a statement (sent or not).
    var waitsForStatement: Bool {
        guard case .perform(let phase, _) = step else { return false }
        return Self.isStatement(phase)
    }

    /// Whether the step is a Redis call (sent or not).
    var waitsForRedis: Bool {
        guard case .perform(let phase, _) = step else { return false }
        return phase == .claim || phase == .push || phase == .releaseRedis
    }

    /// Whether the step is carried out here, without a server: a plan or a skip.
    var waitsForPlan: Bool {
        guard case .perform(let phase, _) = step else { return false }
        return phase == .plan || phase == .skip
    }

    /// Carries out the step, waiting for its answer.
    mutating func perform(_ run: LeaseRun, skipped: inout SkippedRows) throws {
        guard case .perform(let phase, _) = step else { return }
        if Self.isStatement(phase) {
            try sendPostgres(run)
            try receivePostgres(run)
        } else if waitsForRedis {
            try sendRedis(run)
            try receiveRedis(run)
        } else {
            try performHere(run, skipped: &skipped)
        }
    }

    // The steps read the members' actions, which the group set for exactly this phase.

    /// Sends the step's statement down the pipeline without waiting.
    mutating func sendPostgres(_ run: LeaseRun) throws {
        guard case .perform(let phase, let members) = step else { return }
        let queries = run.configuration.queries
        let keys = group.keys
        let statement: SQLStatement
        switch phase {
        case .tryLease:
            statement = queries.tryLeases(members.map { leases[$0] })
        case .fetch:
            statement = queries.fetchFirstBatches(
                members.map { keys[$0].value ?? "" }, limits: members.map(limit), maxBytes: run.configuration.maxBatchBytes)
        case .deadLetter:
            statement = queries.deadLetter(members.flatMap(rejections).map { (id: $0.id, reason: $0.reason) })
        case .mark:
            let marks = members.map(mark)
            statement = queries.markEnqueued(marks.flatMap(\.ids), scheduled: marks.flatMap(\.scheduled))
        case .releaseLease:
            statement = queries.releaseLeases(members.map { leases[$0] })
        default:
            preconditionFailure("\(phase) is not a statement")
        }
        try run.postgres.send([statement], binary: true)
        isSent = true
    }

    /// Receives the result of the statement ``sendPostgres(_:)`` sent, and answers the members.
    mutating func receivePostgres(_ run: LeaseRun) throws {
        guard case .perform(let phase, let members) = step else { return }
        step = nil
        isSent = false
        let keys = group.keys
        switch phase {
        case .tryLease:
            let xids = try run.postgres.receiveNext(decoding: { $0.int64(0) })
            guard xids.count == members.count else { throw RelayProblem.unexpectedReply("the group's leases", "\(xids.count) rows") }
            for (xid, index) in zip(xids, members) {
                if xid != nil { locked.insert(index) }
                run.telemetry.leaseAttempt(keys[index], acquired: xid != nil)
                group.answer(index) { $0.leaseAnswered(xid: xid) }
            }
        case .fetch:
            let limits = members.map(limit)
            let rows = try run.postgres.receiveNext(decoding: { row in (position: Int(row.int64(0)!) - 1, row: LeaseRun.fetchedRow(row, from: 1)) })
            var byMember = Array(repeating: [(OutboxRow, Int64)](), count: members.count)
            for row in rows { byMember[row.position].append(row.row) }
            // Cut at the group's byte limit, the keys after the last row returned got no rows
            // whatever they have pending: they must not be taken as drained.
            let cutAfter = rows.last.flatMap { $0.row.1 >= Int64(run.configuration.maxBatchBytes) ? $0.position : nil }
            for (position, index) in members.enumerated() {
                let batch = byMember[position]
                let available = cutAfter.map { position > $0 } == true ? limits[position] : OutboxQueries.pendingWithinLimit(
                    returned: batch.count, limit: limits[position], lastRunningBytes: batch.last?.1, maxBytes: run.configuration.maxBatchBytes)
                fetchedRows[index] = batch.map(\.0)
                group.answer(index) { $0.fetched(ids: batch.map(\.0.id), available: available) }
            }
        case .deadLetter:
            let rejections = members.map(rejections)
            let result = try run.deadLetterResult { () throws(PostgresError) in _ = try run.postgres.receiveNext() }
            for (index, memberRejections) in zip(members, rejections) {
                if result == .moved { run.reportDeadLettered(memberRejections, key: keys[index]) }
                group.answer(index) { $0.deadLettered(result) }
            }
        case .mark:
            let marks = members.map(mark)
            _ = try run.postgres.receiveNext()
            let took = run.telemetry.monotonicMicros() - started
            for (index, mark) in zip(members, marks) {
                run.telemetry.batchRelayed(keys[index], jobs: mark.ids.count, durationMicros: took)
                group.answer(index) { $0.marked() }
            }
        case .releaseLease:
            _ = try run.postgres.receiveNext()
            locked.subtract(members)
            for index in members { group.answer(index) { $0.leaseReleased() } }
        default:
            preconditionFailure("\(phase) is not a statement")
        }
    }

    /// Sends the step's Redis call without waiting for its replies.
    mutating func sendRedis(_ run: LeaseRun) throws {
        guard case .perform(let phase, let members) = step else { return }
        switch phase {
        case .claim:
            redisReplies = try run.redis.sendClaims(members.map { index in
                guard case .claim(let xid, let rewound) = group.action(of: index) else { preconditionFailure("not a claim") }
                return (fences[index], xid, rewound)
            })
        case .push:
            redisReplies = try run.redis.sendPushes(
                members.map { index in
                    guard case .push(let plan, let fence, let record) = group.action(of: index) else { preconditionFailure("not a push") }
                    return (plan, fences[index], fence, .whole(record))
                }, sidekiq: run.configuration.keys)
        case .releaseRedis:
            redisReplies = try run.redis.sendReleases(members.map { index in
                guard case .releaseRedis(let fence, let remaining) = group.action(of: index) else { preconditionFailure("not a release") }
                return (fences[index], fence, remaining)
            })
        default:
            preconditionFailure("\(phase) is not a Redis call")
        }
        isSent = true
    }

    /// Reads the replies of the call ``sendRedis(_:)`` sent, and answers the members.
    mutating func receiveRedis(_ run: LeaseRun) throws {
        guard case .perform(let phase, let members) = step else { return }
        step = nil
        isSent = false
        let replies = try run.redis.receive(redisReplies)
        switch phase {
        case .claim:
            let claims = try run.redis.claims(replies, count: members.count)
            for (claim, index) in zip(claims, members) { group.answer(index) { $0.claimAnswered(claim) } }
        case .push:
            let pushes = try run.redis.pushes(replies, count: members.count)
            for (push, index) in zip(pushes, members) { group.answer(index) { $0.pushAnswered(push) } }
        case .releaseRedis:
            try run.redis.releases(replies)
            for index in members { group.answer(index) { $0.redisReleased() } }
        default:
            preconditionFailure("\(phase) is not a Redis call")
        }
    }

    /// Carries out a step that needs no pipeline: plans, skips, and asking for the next
    /// transaction id.
    private mutating func performHere(_ run: LeaseRun, skipped: inout SkippedRows) throws {
        guard case .perform(let phase, let members) = step else { return }
        step = nil
        let keys = group.keys
        switch phase {
        case .askNextTransactionID:
            for index in members {
                guard let next = try run.postgres.query(OutboxQueries.nextTransactionID).int64(0, 0) else {
                    throw RelayProblem.unexpectedReply("next transaction id", "NULL")
                }
                group.answer(index) { $0.nextTransactionID(next) }
            }
        case .plan:
            for index in members {
                let plan = BatchPlan(
                    rows: fetchedRows.removeValue(forKey: index) ?? [], encoder: run.configuration.sidekiq, nowMicros: run.nowMicros(),
                    alreadyPushed: group.alreadyPushed(of: index), makeJID: run.makeJID)
                group.answer(index) { $0.planned(plan) }
            }
        case .skip:
            for index in members {
                guard case .skip(let rejections, let reason) = group.action(of: index) else { preconditionFailure("not a skip") }
                run.skip(rejections, because: reason, key: keys[index], skipped: &skipped)
                group.answer(index) { $0.skipped() }
            }
        case .tryLease, .fetch, .deadLetter, .mark, .releaseLease, .claim, .push, .releaseRedis:
            preconditionFailure("\(phase) is sent to a server")
        }
    }

    private func limit(_ index: Int) -> Int {
        guard case .receive(.fetch(let limit, nil)) = group.action(of: index) else { preconditionFailure("not a first fetch") }
        return limit
    }

    private func rejections(_ index: Int) -> [BatchPlan.Rejection] {
        guard case .receive(.deadLetter(let rejections)) = group.action(of: index) else { preconditionFailure("not a dead letter") }
        return rejections
    }

    private func mark(_ index: Int) -> (ids: [Int64], scheduled: [Int64]) {
        guard case .receive(.mark(let ids, let scheduled)) = group.action(of: index) else { preconditionFailure("not a mark") }
        return (ids, scheduled)
    }
}
