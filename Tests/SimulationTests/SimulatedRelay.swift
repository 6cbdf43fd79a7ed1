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
    }

    let name: Int
    let database: Int
    let batchSize: Int
    let batchesPerLease: Int
    /// Rows per fetch (the page is pushed in chunks of `batchSize`) and lingers per lease.
    let pageSize: Int
    let lingers: Int
    private(set) var phase: Phase = .disconnected
    private var session: Int?
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

    init(name: Int, database: Int, batchSize: Int, batchesPerLease: Int, pageSize: Int? = nil, lingers: Int = 0) {
        self.name = name
        self.database = database
        self.batchSize = batchSize
        self.batchesPerLease = batchesPerLease
        self.pageSize = pageSize ?? batchSize
        self.lingers = lingers
    }

    var isLeasing: Bool {
        if case .leasing = phase { return true }
        return false
    }

    /// The instance dies (kill -9): its PostgreSQL session ends, it restarts after `restartAt`.
    func crash(in world: Simulation, restartAt: Int) {
        if let session { world.postgres.end(session, commits: { _ in world.random.chance(0.5) }) }
        session = nil
        refused = RefusedKeys()
        tempos = [:]
        skipped = [:]
        phase = .waiting(until: restartAt)
    }

    /// Its PostgreSQL session is cut while it goes on (a network cut, or a pause past the timeout).
    func cutSession(in world: Simulation) {
        if let session { world.postgres.end(session, commits: { _ in world.random.chance(0.5) }) }
    }

    func step(in world: Simulation) {
        guard world.now >= pausedUntil else { return }
        switch phase {
        case .waiting(let until):
            if world.now >= until { phase = .disconnected }
        case .disconnected:
            session = world.postgres.connect(database: database)
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
        var machine = LeaseMachine(
            tempo: LeaseTempo(
                maximumBatches: batchesPerLease, batchSize: batchSize, carriedLimit: tempos[key], pageSize: pageSize, lingers: lingers),
            deadLetterProblem: world.postgres.databases[database]!.hasDeadLetterTable ? nil : "no dead-letter table")
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
        if let session { world.postgres.end(session, commits: { _ in world.random.chance(0.5) }) }
        session = nil
        phase = .waiting(until: world.now + world.random.int(1...20))
    }

    private func perform(_ action: LeaseMachine.Action, key: SplitKey, machine: inout LeaseMachine, in world: Simulation) throws
        -> LeaseMachine.Action
    {
        guard let session else { throw PostgresModel.SessionLost() }
        let lease = LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: key)
        let keys = FencedPush.Keys(
            lease: lease, cluster: FencedPush.scope(system: world.postgres.systemIdentifier, database: String(database)), namespace: nil)
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
            try world.postgres.send(session, statements, key: key, skipping: skipped[key] ?? [])
            return machine.sent()
        case .receive(let statement):
            let result = try world.postgres.receive(session)
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
            let command = FencedPush.push(sha: "", keys: keys, sidekiq: SidekiqKeys(), fence: fence, plan: plan, record: record)
            var push = try FencedPush.pushAnswer(try world.redisScript(.push, command, by: self))
            if push == .pushed, world.waitReplicas, !world.redisWait() { push = .unconfirmed("0 of 1 replicas") }
            return machine.pushAnswered(push)
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

    static func describe(_ action: LeaseMachine.Action) -> String {
        switch action {
        case .push(let plan, let fence, let record):
            "push \(plan.pushedIDs) mark-later \(plan.markIDs) under \(fence) recording \(record.ids.sorted())"
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
