import OutboxRelay

/// One relay instance in the simulation: the daemon's loop (connect, pass over the keys with
/// pending rows, lease each in turn, back off after a failure) around the real ``LeaseMachine``,
/// performing one action against the models per step, so instances interleave at every action.
final class SimulatedRelay {
    enum Phase {
        case disconnected
        /// Waiting until the step (backoff, sleep on empty, crashed, paused).
        case waiting(until: Int)
        case passing(keys: [SplitKey])
        case leasing(key: SplitKey, machine: LeaseMachine, action: LeaseMachine.Action, rest: [SplitKey])
        /// Keys leased together (``LeaseGroup``s), two groups in flight as in the daemon; `waiting`:
        /// the chunks of keys still to start, `again`: keys to lease alone afterwards.
        case grouping(flights: [GroupFlight], waiting: [[SplitKey]], again: [SplitKey], rest: [SplitKey])
    }

    let name: Int
    let database: Int
    let batchSize: Int
    let batchesPerLease: Int
    /// The most keys leased together, as the daemon's ``LeaseGroup``s (1: every key alone).
    let groupSize: Int
    /// Rows per fetch (the page is pushed in chunks of `batchSize`) and lingers per lease.
    let pageSize: Int
    let lingers: Int
    private(set) var phase: Phase = .disconnected
    private var session: Int?
    /// The second session single leases fetch on, as the daemon's res layout does (see
    /// ``readsAside``): the world runs its groups when it likes, before or after the leasing
    /// session's, so a fetch may overtake a mark sent before it.
    private var reader: Int?
    private var refused = RefusedKeys()
    private var tempos: [SplitKey: Int] = [:]
    private var skipped: [SplitKey: Set<Int64>] = [:]
    /// As the daemon's SkippedRows: forgotten every 300 s, so a skipped id that a restore gave
    /// to another row is relayed then.
    private var skippedSince = 0
    /// The rows of the last fetch, until the machine asks for their plan.
    private var fetchedRows: [OutboxRow] = []
    /// Paused (a zombie): its next action runs when it resumes, whatever happened meanwhile.
    var pausedUntil = 0
    /// Whether single leases fetch on their own session (two relays in three), or on the leasing
    /// session, as the daemon does with the reliable_job layout.
    var readsAside: Bool { name % 3 != 1 }
    /// Whether a page's pushes are sent without waiting, as the daemon's single leases do
    /// (even-numbered relays), or each answered at once (odd ones).
    var overlapsPushes: Bool { name.isMultiple(of: 2) }
    /// Job bytes above which a push is a transaction: always, never, or for batches of more than
    /// a few jobs, by relay.
    var transactionAbove: Int { [0, Int.max, 300][name % 3] }
    /// The answers of the pushes sent without waiting: each ran when it was sent, and their
    /// answers are read at a later step, so faults fall between.
    private var pushesInFlight: [LeaseMachine.Push]?

    init(name: Int, database: Int, batchSize: Int, batchesPerLease: Int, pageSize: Int? = nil, lingers: Int = 0, groupSize: Int = 1) {
        self.name = name
        self.database = database
        self.batchSize = batchSize
        self.batchesPerLease = batchesPerLease
        self.groupSize = groupSize
        self.pageSize = pageSize ?? batchSize
        self.lingers = lingers
    }

    var isLeasing: Bool {
        switch phase {
        case .leasing, .grouping: true
        default: false
        }
    }

    /// The instance dies (kill -9): its PostgreSQL session ends, it restarts after `restartAt`.
    func crash(in world: Simulation, restartAt: Int) {
        endSessions(in: world)
        refused = RefusedKeys()
        tempos = [:]
        skipped = [:]
        phase = .waiting(until: restartAt)
    }

    /// Its PostgreSQL session is cut while it goes on (a network cut, or a pause past the timeout).
    func cutSession(in world: Simulation) {
        let cut = world.random.chance(0.5) ? session : reader
        if let cut { world.postgres.end(cut, commits: { _ in world.random.chance(0.5) }) }
    }

    /// Both sessions end, the reader first or last.
    private func endSessions(in world: Simulation) {
        for ending in world.random.chance(0.5) ? [session, reader] : [reader, session] {
            if let ending { world.postgres.end(ending, commits: { _ in world.random.chance(0.5) }) }
        }
        session = nil
        reader = nil
    }

    func step(in world: Simulation) {
        guard world.now >= pausedUntil else { return }
        switch phase {
        case .waiting(let until):
            if world.now >= until { phase = .disconnected }
        case .disconnected:
            session = world.postgres.connect(database: database)
            if readsAside { reader = world.postgres.connect(database: database) }
            phase = .passing(keys: [])
            startPass(in: world)
        case .passing(let keys):
            nextKey(keys, in: world)
        case .leasing(let key, var machine, let action, let rest):
            do {
                let next = try perform(action, key: key, machine: &machine, in: world)
                world.trace("relay \(name) \(key): \(Self.describe(action)) → \(Self.describe(next))")
                switch next {
                case .finished(let outcome):
                    finished(outcome, key: key, in: world)
                    phase = .passing(keys: rest)
                case .abandon(let failure):
                    fail("\(failure)", in: world)
                default:
                    phase = .leasing(key: key, machine: machine, action: next, rest: rest)
                }
            } catch {
                world.trace("relay \(name) \(key): \(Self.describe(action)) failed: \(error)")
                fail("\(error)", in: world)
            }
        case .grouping(let flights, let waiting, let again, let rest):
            stepGroups(flights, waiting: waiting, again: again, rest: rest, in: world)
        }
    }

    private func startPass(in world: Simulation) {
        if world.now - skippedSince > 30_000 {
            skipped = [:]
            skippedSince = world.now
        }
        guard let session, let keys = try? world.postgres.keysWithPendingRows(session) else {
            fail("PostgreSQL session lost", in: world)
            return
        }
        let ready = keys.filter { !refused.isWaiting($0, nowMicros: world.nowMicros) }
        phase = ready.isEmpty ? .waiting(until: world.now + 5) : .passing(keys: ready)
    }

    private func nextKey(_ keys: [SplitKey], in world: Simulation) {
        guard let key = keys.first else { return startPass(in: world) }
        // As the daemon's PassScheduler: consecutive named keys with nothing skipped and no
        // backlog carried over are leased together.
        let members = Array(keys.prefix { $0 != .null && (skipped[$0] ?? []).isEmpty && tempos[$0] == nil }.prefix(3 * groupSize))
        if members.count >= 2 {
            let chunks = stride(from: 0, to: members.count, by: groupSize).map { Array(members[$0..<min(members.count, $0 + groupSize)]) }
            phase = .grouping(flights: [], waiting: chunks, again: [], rest: Array(keys.dropFirst(members.count)))
            return
        }
        var machine = LeaseMachine(
            tempo: LeaseTempo(
                maximumBatches: batchesPerLease, batchSize: batchSize, carriedLimit: tempos[key], pageSize: pageSize, lingers: lingers),
            deadLetterProblem: world.postgres.databases[database]!.hasDeadLetterTable ? nil : "no dead-letter table",
            overlapsPushes: overlapsPushes)
        pushesInFlight = nil
        let action = machine.start()
        phase = .leasing(key: key, machine: machine, action: action, rest: Array(keys.dropFirst()))
    }

    private func finished(_ outcome: LeaseMachine.Outcome, key: SplitKey, in world: Simulation) {
        guard outcome.leased else { return }
        tempos[key] = outcome.carriedLimit
        if let reason = outcome.refused {
            _ = refused.refused(key, reason: reason, nowMicros: world.nowMicros)
        } else if outcome.handled > 0 {
            _ = refused.relayed(key)
        }
    }

    /// Any failure: the connections are dropped (the lease dies with the session), then a backoff.
    private func fail(_ reason: String, in world: Simulation) {
        endSessions(in: world)
        phase = .waiting(until: world.now + world.random.int(1...20))
    }

    private func leaseKey(_ key: SplitKey) -> LeaseKey {
        LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: key)
    }

    private func fenceKeys(_ key: SplitKey, in world: Simulation) -> FencedPush.Keys {
        FencedPush.Keys(
            lease: leaseKey(key), cluster: FencedPush.scope(system: world.postgres.systemIdentifier, database: String(database)), namespace: nil)
    }

    private func perform(_ action: LeaseMachine.Action, key: SplitKey, machine: inout LeaseMachine, in world: Simulation) throws
        -> LeaseMachine.Action
    {
        guard let session else { throw PostgresModel.SessionLost() }
        let lease = leaseKey(key)
        let keys = fenceKeys(key, in: world)
        switch action {
        case .tryLease:
            return machine.leaseAnswered(xid: try world.postgres.tryLease(session, lease: lease.value))
        case .claim(let xid, let rewound):
            let reply = try world.redisScript(.claim, FencedPush.claim(sha: "", keys: keys, xid: xid, rewound: rewound), by: self)
            var claim = try FencedPush.claimAnswer(reply)
            // As FencedRedis: WAIT follows the script in the same pipeline.
            if case .granted = claim, world.waitReplicas, !world.redisWait() { claim = .unconfirmed("0 of 1 replicas") }
            return machine.claimAnswered(claim)
        case .askNextTransactionID:
            return machine.nextTransactionID(try world.postgres.nextTransactionID(session))
        case .send(let statements):
            // As the daemon's LeaseRun: fetches on the reader, the rest on the leasing session.
            let (fetches, others) = LeaseMachine.Statement.split(statements)
            let groups = reader.map { [($0, fetches), (session, others)] } ?? [(session, statements)]
            for (target, group) in groups where !group.isEmpty {
                try world.postgres.send(target, group, key: key, skipping: skipped[key] ?? [])
            }
            return machine.sent()
        case .receive(let statement):
            let result = try world.postgres.receive(statement.isFetch ? reader ?? session : session)
            switch (statement, result) {
            case (.fetch(let limit, _), .rows(let rows)):
                // Kept until the machine asks for their plan, as the daemon's driver does.
                fetchedRows = rows.map { OutboxRow(id: $0.id, payload: $0.payload, postgresMicros: $0.postgresMicros, jid: nil) }
                let available = rows.count < limit ? rows.count : limit
                return machine.fetched(ids: rows.map(\.id), available: available)
            case (.mark, .done):
                return machine.marked()
            case (.deadLetter, .done):
                return machine.deadLettered(.moved)
            case (.deadLetter, .failed(let reason)):
                return machine.deadLettered(.failed(reason))
            default:
                return machine.failed(.serverFailed("PostgreSQL answered \(result) to \(statement)"))
            }
        case .plan:
            // In chunks of at most the batch size, as the daemon's driver plans a page.
            var chunks: [BatchPlan] = []
            var rest = fetchedRows[...]
            repeat {
                chunks.append(
                    BatchPlan(
                        rows: Array(rest.prefix(machine.pushSize)), encoder: SidekiqJobEncoder(), nowMicros: world.nowMicros,
                        alreadyPushed: machine.alreadyPushed, makeJID: { "000000000000000000000000" }))
                rest = rest.dropFirst(machine.pushSize)
            } while !rest.isEmpty
            fetchedRows = []
            return machine.planned(chunks: chunks)
        case .linger:
            // A notification came in time, or not.
            return machine.lingered(notified: world.random.chance(0.5))
        case .push(let plan, let fence, let record):
            let push = try push(plan, keys: keys, fence: fence, record: .whole(record), in: world)
            return machine.pushAnswered(waited([push], in: world)[0])
        case .sendPushes(let plans, let fence, let records):
            // One after another, as Redis runs a pipeline. After a failure (the connection dropped,
            // a reply lost, a fenced push) the rest of the pipeline may still have reached Redis.
            var pushes: [LeaseMachine.Push] = []
            var failure: (any Error)?
            for (plan, record) in zip(plans, records) {
                if failure != nil, world.random.chance(0.5) { break }
                do {
                    pushes.append(try push(plan, keys: keys, fence: fence, record: record, in: world))
                } catch {
                    failure = failure ?? error
                }
            }
            if let failure { throw failure }
            pushesInFlight = waited(pushes, in: world)
            return machine.pushSent()
        case .receivePush:
            guard let pushes = pushesInFlight.take() else { return machine.failed(.serverFailed("no push in flight")) }
            return machine.pushesAnswered(pushes)
        case .skip(let rejections, _):
            skipped[key, default: []].formUnion(rejections.map(\.id))
            return machine.skipped()
        case .releaseRedis(let fence, let remaining):
            let reply = try world.redisScript(.release, FencedPush.release(sha: "", keys: keys, fence: fence, remaining: remaining), by: self)
            if case .error(let message) = reply { return machine.failed(.serverFailed(message)) }
            return machine.redisReleased()
        case .releaseLease:
            try world.postgres.releaseLease(session, lease: lease.value)
            return machine.leaseReleased()
        case .finished, .abandon:
            return action
        }
    }

    /// One push (``FencedPush/push(keys:sidekiq:fence:plan:record:smallSHA:transactionAbove:)``)
    /// run against the world's Redis, answered as ``FencedRedis`` answers it.
    private func push(_ plan: BatchPlan, keys: FencedPush.Keys, fence: String, record: RecordWrite, in world: Simulation) throws
        -> LeaseMachine.Push
    {
        let commands = FencedPush.push(
            keys: keys, sidekiq: SidekiqKeys(), fence: fence, plan: plan, record: record, smallSHA: "", transactionAbove: transactionAbove)
        return try FencedPush.pushAnswer(replies: try world.redisPush(commands, by: self)[...])
    }

    /// As ``FencedRedis``: one `WAIT` after a pipeline of pushes, when one of them was pushed;
    /// if the replica does not take it, every pushed one is unconfirmed.
    private func waited(_ pushes: [LeaseMachine.Push], in world: Simulation) -> [LeaseMachine.Push] {
        guard world.waitReplicas, pushes.contains(.pushed), !world.redisWait() else { return pushes }
        return pushes.map { $0 == .pushed ? .unconfirmed("0 of 1 replicas") : $0 }
    }

    static func describe(_ action: LeaseMachine.Action) -> String {
        switch action {
        case .push(let plan, let fence, let record):
            "push \(plan.pushedIDs) mark-later \(plan.markIDs) under \(fence) recording \(record.ids.sorted())"
        case .sendPushes(let plans, let fence, let records):
            "send pushes \(plans.map(\.pushedIDs)) mark-later \(plans.map(\.markIDs)) under \(fence) recording \(records.map { $0.rows.ids.sorted() })"
        case .send(let statements): "send \(statements.map(describe))"
        case .receive(let statement): "receive \(describe(statement))"
        default: "\(action)"
        }
    }

    static func describe(_ statement: LeaseMachine.Statement) -> String {
        switch statement {
        case .fetch(let limit, let after): "fetch(\(limit) after \(after.map(String.init) ?? "-"))"
        case .mark(let ids, _): "mark\(ids)"
        case .deadLetter(let rejections): "deadLetter\(rejections.map(\.id))"
        }
    }
}

// MARK: groups

/// A group in flight: its step to carry out next, or the combined statement whose result it awaits.
struct GroupFlight {
    var group: LeaseGroup
    var step: LeaseGroup.Step?
    var awaiting: (phase: LeaseGroup.Phase, members: [Int])?
    /// When the awaited statement was sent: results come in the order sent.
    var sentAt: Int?
    /// A Redis call that ran, whose replies the relay has not read yet (in the order sent).
    var redisAnswered: RedisAnswered?
    var redisSentAt: Int?

    enum RedisAnswered {
        case claims([Int], [LeaseMachine.Claim])
        case pushes([Int], [LeaseMachine.Push])
        case released([Int])
    }
    /// The rows each member fetched, until the group asks for their plan.
    var fetched: [Int: [OutboxRow]] = [:]
}

extension SimulatedRelay {
    /// One step of the groups in flight, as the daemon's driver carries them out: a phase for all
    /// the members of one group at once (one statement, or one Redis pipeline with one WAIT). Up to
    /// three groups are in flight and any may take the next step: a group sends its statement down
    /// the session's pipeline whenever it is ready (however many others are in it), results are
    /// received in the order sent, and asking for the next transaction id waits for an empty
    /// pipeline. The combined fetch, mark and dead-letter statements are sent in one step and
    /// received in a later one, so faults fall between them as between a statement and its reply.
    fileprivate func stepGroups(_ flights: [GroupFlight], waiting: [[SplitKey]], again: [SplitKey], rest: [SplitKey], in world: Simulation) {
        var flights = flights
        var waiting = waiting
        var again = again
        while flights.count < 3, !waiting.isEmpty {
            flights.append(GroupFlight(group: LeaseGroup(
                keys: waiting.removeFirst(), batchSize: batchSize,
                deadLetterProblem: world.postgres.databases[database]!.hasDeadLetterTable ? nil : "no dead-letter table")))
        }
        guard !flights.isEmpty else {
            // Keys with rows left are leased alone next, as the daemon does.
            phase = .passing(keys: again + rest)
            return
        }
        for index in flights.indices where flights[index].step == nil && flights[index].awaiting == nil && flights[index].redisAnswered == nil {
            flights[index].step = flights[index].group.nextStep()
        }
        if let index = flights.firstIndex(where: { if case .finished = $0.step { true } else { false } }),
            case .finished(let outcomes) = flights[index].step
        {
            world.trace("relay \(name) group \(flights[index].group.keys): finished")
            for (key, outcome) in zip(flights[index].group.keys, outcomes) {
                finished(outcome, key: key, in: world)
                if outcome.carriedLimit != nil { again.append(key) }
            }
            flights.remove(at: index)
            phase = .grouping(flights: flights, waiting: waiting, again: again, rest: rest)
            return
        }
        if let failure = flights.lazy.compactMap({ if case .abandon(let failure) = $0.step { failure } else { nil } }).first {
            world.trace("relay \(name) groups abandoned: \(failure)")
            fail("\(failure)", in: world)
            return
        }
        let oldestSent = flights.compactMap(\.sentAt).min()
        let oldestSentToRedis = flights.compactMap(\.redisSentAt).min()
        let ready = flights.indices.filter { index in
            if let sentAt = flights[index].sentAt { return sentAt == oldestSent }
            if let sentAt = flights[index].redisSentAt { return sentAt == oldestSentToRedis }
            guard case .perform(let step, _) = flights[index].step else { return false }
            return step != .askNextTransactionID || oldestSent == nil
        }
        let index = world.random.pick(ready)
        let keys = flights[index].group.keys
        do {
            if let awaiting = flights[index].awaiting {
                try receiveGroup(awaiting.phase, awaiting.members, flight: &flights[index], in: world)
                world.trace("relay \(name) group \(keys): received \(awaiting.phase) of \(awaiting.members)")
                flights[index].awaiting = nil
                flights[index].sentAt = nil
            } else if let answered = flights[index].redisAnswered {
                // The relay reads the replies of a Redis call that ran steps ago.
                switch answered {
                case .claims(let members, let claims):
                    for (member, claim) in zip(members, claims) { flights[index].group.answer(member) { $0.claimAnswered(claim) } }
                case .pushes(let members, let pushes):
                    for (member, push) in zip(members, pushes) { flights[index].group.answer(member) { $0.pushAnswered(push) } }
                case .released(let members):
                    for member in members { flights[index].group.answer(member) { $0.redisReleased() } }
                }
                world.trace("relay \(name) group \(keys): read the Redis replies")
                flights[index].redisAnswered = nil
                flights[index].redisSentAt = nil
            } else if case .perform(let step, let members) = flights[index].step {
                world.trace("relay \(name) group \(keys): \(step) \(members.map { Self.describe(flights[index].group.action(of: $0)) })")
                flights[index].step = nil
                switch step {
                case .fetch, .mark, .deadLetter:
                    try sendGroup(step, members, group: flights[index].group, in: world)
                    flights[index].awaiting = (step, members)
                    flights[index].sentAt = world.now
                default:
                    try performGroup(step, members, flight: &flights[index], in: world)
                    if flights[index].redisAnswered != nil { flights[index].redisSentAt = world.now }
                }
            }
            phase = .grouping(flights: flights, waiting: waiting, again: again, rest: rest)
        } catch {
            world.trace("relay \(name) group \(keys): failed: \(error)")
            fail("\(error)", in: world)
        }
    }

    private func sendGroup(_ step: LeaseGroup.Phase, _ members: [Int], group: LeaseGroup, in world: Simulation) throws {
        guard let session else { throw PostgresModel.SessionLost() }
        switch step {
        case .fetch:
            // One combined statement: each key's fetch, in the order of the members.
            for index in members {
                guard case .receive(.fetch(let limit, let after)) = group.action(of: index) else { fatalError("not a fetch") }
                let key = group.keys[index]
                try world.postgres.send(session, [.fetch(limit: limit, after: after)], key: key, skipping: skipped[key] ?? [])
            }
        case .mark:
            var ids: [Int64] = []
            var scheduled: [Int64] = []
            for index in members {
                guard case .receive(.mark(let markIDs, let markScheduled)) = group.action(of: index) else { fatalError("not a mark") }
                ids += markIDs
                scheduled += markScheduled
            }
            try world.postgres.send(session, [.mark(ids: ids, scheduled: scheduled)], key: .null, skipping: [])
        case .deadLetter:
            let rejections = members.flatMap { index -> [BatchPlan.Rejection] in
                guard case .receive(.deadLetter(let rejections)) = group.action(of: index) else { fatalError("not a dead letter") }
                return rejections
            }
            try world.postgres.send(session, [.deadLetter(rejections)], key: .null, skipping: [])
        default:
            fatalError("\(step) is not sent")
        }
    }

    private func receiveGroup(_ step: LeaseGroup.Phase, _ members: [Int], flight: inout GroupFlight, in world: Simulation) throws {
        guard let session else { throw PostgresModel.SessionLost() }
        switch step {
        case .fetch:
            var results: [[PostgresModel.Row]] = []
            var limits: [Int] = []
            for index in members {
                guard case .receive(.fetch(let limit, _)) = flight.group.action(of: index), case .rows(let rows) = try world.postgres.receive(session) else {
                    throw PostgresModel.SessionLost()
                }
                results.append(rows)
                limits.append(limit)
            }
            // As the daemon's combined fetch, sometimes cut at the group's byte limit: the rows
            // after the cut do not come, and the keys from the one holding the last row on are
            // answered as having more pending (no key past the cut may be taken as drained).
            var cutFrom: Int?
            let total = results.reduce(0) { $0 + $1.count }
            if total > 1, world.random.chance(0.2) {
                var left = world.random.int(1...(total - 1))
                for position in results.indices {
                    if left == 0 {
                        results[position] = []
                    } else if left < results[position].count {
                        results[position] = Array(results[position].prefix(left))
                        cutFrom = cutFrom ?? position
                        left = 0
                    } else {
                        left -= results[position].count
                        if left == 0 { cutFrom = cutFrom ?? position }
                    }
                }
                world.trace("relay \(name): group fetch cut at \(total - (total - results.reduce(0) { $0 + $1.count })) of \(total) rows")
            }
            for (position, index) in members.enumerated() {
                let rows = results[position]
                flight.fetched[index] = rows.map { OutboxRow(id: $0.id, payload: $0.payload, postgresMicros: $0.postgresMicros, jid: nil) }
                let limit = limits[position]
                let available = cutFrom.map { position >= $0 } == true ? limit : (rows.count < limit ? rows.count : limit)
                flight.group.answer(index) { $0.fetched(ids: rows.map(\.id), available: available) }
            }
        case .mark:
            guard case .done = try world.postgres.receive(session) else { throw PostgresModel.SessionLost() }
            for index in members { flight.group.answer(index) { $0.marked() } }
        case .deadLetter:
            let result: LeaseMachine.DeadLettered
            switch try world.postgres.receive(session) {
            case .done: result = .moved
            case .failed(let reason): result = .failed(reason)
            case .rows: throw PostgresModel.SessionLost()
            }
            for index in members { flight.group.answer(index) { $0.deadLettered(result) } }
        default:
            fatalError("\(step) is not received")
        }
    }

    private func performGroup(_ step: LeaseGroup.Phase, _ members: [Int], flight: inout GroupFlight, in world: Simulation) throws {
        guard let session else { throw PostgresModel.SessionLost() }
        let keys = flight.group.keys
        switch step {
        case .tryLease:
            // One statement: one transaction id for every lock taken.
            let xids = try world.postgres.tryLeases(session, leases: members.map { leaseKey(keys[$0]).value })
            for (index, xid) in zip(members, xids) { flight.group.answer(index) { $0.leaseAnswered(xid: xid) } }
        case .claim:
            // One script call for the group (its members share the lock statement's xid), then one WAIT.
            let leases = members.map { index -> (keys: FencedPush.Keys, rewound: String?, xid: Int64) in
                guard case .claim(let xid, let rewound) = flight.group.action(of: index) else { fatalError("not a claim") }
                return (fenceKeys(keys[index], in: world), rewound, xid)
            }
            let command = FencedPush.claimGroup(sha: "", leases: leases.map { ($0.keys, $0.rewound) }, xid: leases[0].xid)
            let reply = try world.redisScript(.claimGroup, command, by: self)
            guard let answers = FencedPush.claimGroupAnswers(reply, count: members.count) else {
                throw Simulation.ScriptFailed(message: "\(reply)")
            }
            var claims = try answers.map { try FencedPush.claimAnswer($0) }
            if world.waitReplicas, claims.contains(where: { if case .granted = $0 { true } else { false } }), !world.redisWait() {
                claims = claims.map { if case .granted = $0 { .unconfirmed("0 of 1 replicas") } else { $0 } }
            }
            // Sent without waiting: the replies are read in a later step.
            flight.redisAnswered = .claims(members, claims)
        case .askNextTransactionID:
            for index in members {
                let next = try world.postgres.nextTransactionID(session)
                flight.group.answer(index) { $0.nextTransactionID(next) }
            }
        case .plan:
            for index in members {
                let plan = BatchPlan(
                    rows: flight.fetched.removeValue(forKey: index) ?? [], encoder: SidekiqJobEncoder(), nowMicros: world.nowMicros,
                    alreadyPushed: flight.group.alreadyPushed(of: index), makeJID: { "000000000000000000000000" })
                flight.group.answer(index) { $0.planned(plan) }
            }
        case .push:
            var pushes: [LeaseMachine.Push] = []
            for index in members {
                guard case .push(let plan, let fence, let record) = flight.group.action(of: index) else { fatalError("not a push") }
                pushes.append(try push(plan, keys: fenceKeys(keys[index], in: world), fence: fence, record: .whole(record), in: world))
            }
            flight.redisAnswered = .pushes(members, waited(pushes, in: world))
        case .skip:
            for index in members {
                guard case .skip(let rejections, _) = flight.group.action(of: index) else { fatalError("not a skip") }
                skipped[keys[index], default: []].formUnion(rejections.map(\.id))
                flight.group.answer(index) { $0.skipped() }
            }
        case .releaseRedis:
            let leases = members.map { index -> (keys: FencedPush.Keys, fence: String, remaining: RecordedRows) in
                guard case .releaseRedis(let fence, let remaining) = flight.group.action(of: index) else { fatalError("not a release") }
                return (fenceKeys(keys[index], in: world), fence, remaining)
            }
            let reply = try world.redisScript(.releaseGroup, FencedPush.releaseGroup(sha: "", leases: leases), by: self)
            if case .error(let message) = reply { throw Simulation.ScriptFailed(message: message) }
            flight.redisAnswered = .released(members)
        case .releaseLease:
            for index in members { try world.postgres.releaseLease(session, lease: leaseKey(keys[index]).value) }
            for index in members { flight.group.answer(index) { $0.leaseReleased() } }
        case .fetch, .mark, .deadLetter:
            fatalError("\(step) is sent, then received")
        }
    }
}
