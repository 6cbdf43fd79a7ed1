import OutboxRelay

/// A seeded, deterministic world: PostgreSQL and Redis models, an application committing rows,
/// several relay instances, and faults drawn from the seed. ``run()`` returns the violated
/// invariants (none when the promise held); the same seed replays the same run exactly.
final class Simulation {
    struct Options {
        /// Faults the run may not inject, by their number in the run (to shrink a failing run).
        var disabledFaults: Set<Int> = []
        var tracing = false
    }

    struct Random {
        private var state: UInt64

        init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

        /// SplitMix64.
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func int(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.count))
        }

        mutating func chance(_ probability: Double) -> Bool {
            Double(next() >> 11) / Double(1 << 53) < probability
        }

        mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
    }

    let seed: UInt64
    var random: Random
    let postgres: PostgresModel
    let redis = RedisModel()
    let scripts: LuaScripts
    private(set) var relays: [SimulatedRelay] = []
    private(set) var now = 0
    /// A step is 10 ms of the relay's clock (backoffs, refused keys, scheduled jobs).
    var nowMicros: Int64 { 1_800_000_000_000_000 + Int64(now) * 10_000 }
    private let options: Options
    private(set) var traced: [String] = []
    private(set) var faults: [String] = []
    private var faultNumber = 0
    private(set) var violations: [String] = []

    /// Faults after which Redis may hold a job twice: the relay's own keys lost, or a database
    /// restored to an earlier state (its rows marked since are relayed again).
    private var duplicatesExcused = false
    /// Jobs whose rows a restore took away: their jobs may stay in Redis.
    private var restored = false
    /// Whether the relays run with `--redis-wait-replicas 1`: each claim and push counts only once
    /// the replica acknowledged it (`WAIT`).
    let waitReplicas: Bool
    /// Redis failed over to its replica during the run, losing the writes it had not replicated.
    private var failedOver = false
    /// Jobs a failover took away (they were on the old master only).
    private var lostInFailover: Set<String> = []
    /// Rows marked enqueued whose jobs are not in Redis at the end: what a failover without
    /// `WAIT` may lose (never with it).
    private(set) var lostJobs = 0
    /// Keys of the wrong type the run set, to fix once the faults are over.
    private var wrongTyped: [String] = []
    private let databases: [Int]
    private let keys: [SplitKey]
    private let queues: [String]
    private var produced = 0
    private let rowsToProduce: Int
    private let faultSteps: Int

    init(seed: UInt64, scripts: LuaScripts, options: Options = Options()) {
        self.seed = seed
        self.scripts = scripts
        self.options = options
        random = Random(seed: seed)
        // Sometimes two databases of one cluster share the Redis database, with the same table and keys.
        databases = random.chance(0.3) ? [16_384, 16_385] : [16_384]
        postgres = PostgresModel(databases: databases)
        // Sometimes the dead-letter table is missing: bad rows then stay pending, skipped.
        if random.chance(0.15) { postgres.dropDeadLetterTable(database: databases[0]) }
        keys = Array([SplitKey.named("a"), .named("b"), .null, .named("caf\u{E9}")].prefix(random.int(1...4)))
        // Queue names that Swift's String calls equal (NFC and NFD) must stay two queues.
        queues = ["q", "caf\u{E9}", "cafe\u{301}"]
        rowsToProduce = random.int(10...60)
        waitReplicas = random.chance(0.5)
        faultSteps = random.int(100...600)
        for name in 0..<random.int(1...3) {
            // Small pages pushed in smaller chunks, and leases that linger on notifications.
            let batchSize = random.int(1...6)
            relays.append(
                SimulatedRelay(
                    name: name, database: random.pick(databases), batchSize: batchSize, batchesPerLease: random.int(1...4),
                    pageSize: batchSize * random.int(1...3) + random.int(0...2), lingers: random.int(0...3),
                    groupSize: random.pick([1, 2, 3, 4])))
        }
        // Every database has a relay.
        for database in databases where !relays.contains(where: { $0.database == database }) {
            relays.append(SimulatedRelay(name: relays.count, database: database, batchSize: random.int(1...6), batchesPerLease: 3))
        }
        postgres.onMark = { [unowned self] database, rows in
            for row in rows where redis.written[row.jid] == nil {
                violate("row \(row.id) of database \(database) was marked enqueued while its job is not in Redis")
            }
            // With WAIT, a row is marked only once its job is on the replica, so no failover loses it.
            guard waitReplicas else { return }
            let replicated = RedisModel.jobs(in: redis.replicaKeys)
            for row in rows where !replicated.contains(row.jid) {
                violate("row \(row.id) of database \(database) was marked enqueued while its job is not on the replica (WAIT)")
            }
        }
    }

    func trace(_ line: @autoclosure () -> String) {
        if options.tracing { traced.append("[\(now)] \(line())") }
    }

    private func violate(_ message: String) {
        violations.append("step \(now): \(message)")
    }

    // MARK: Redis calls with their faults

    struct ConnectionDropped: Error {}

    /// A script answered with an error the relay cannot go on from.
    struct ScriptFailed: Error {
        let message: String
    }

    /// Runs a script for a relay; the connection may drop before it runs, or after it ran (the
    /// reply lost).
    func redisScript(_ script: LuaScripts.Script, _ command: RedisCommand, by relay: SimulatedRelay) throws -> RedisReply {
        if inFaultPhase, random.chance(0.02), fault("Redis connection of relay \(relay.name) dropped before the \(script) script") {
            throw ConnectionDropped()
        }
        let reply = scripts.run(command, script: script, on: redis)
        if inFaultPhase, random.chance(0.03), fault("reply to relay \(relay.name)'s \(script) script lost after it ran") {
            throw ConnectionDropped()
        }
        return reply
    }

    /// A push (``FencedPush/push(keys:sidekiq:fence:plan:record:smallSHA:transactionAbove:)``):
    /// one call of the small push script, or a transaction: `MULTI`, its `LPUSH`es and its
    /// script, run as one at `EXEC`. Returns one reply per command. As with a script, the
    /// connection may drop before it ran (nothing ran) or its replies be lost after.
    func redisPush(_ commands: [RedisCommand], by relay: SimulatedRelay) throws -> [RedisReply] {
        if commands.count == 1 { return [try redisScript(.smallPush, commands[0], by: relay)] }
        if inFaultPhase, random.chance(0.02), fault("Redis connection of relay \(relay.name) dropped before the push transaction's EXEC") {
            throw ConnectionDropped()
        }
        var replies: [RedisReply] = [.status("OK")]
        var results: [RedisReply] = []
        for command in commands.dropFirst().dropLast() {
            replies.append(.status("QUEUED"))
            switch String(decoding: command.arguments[0], as: UTF8.self) {
            case "EVAL": results.append(scripts.run(command, script: .push, on: redis))
            default: results.append(redis.command(command.arguments))
            }
        }
        replies.append(.array(results))
        if inFaultPhase, random.chance(0.03), fault("replies to relay \(relay.name)'s push transaction lost after it ran") {
            throw ConnectionDropped()
        }
        return replies
    }

    /// `WAIT 1 timeout` after a script: true once the replica has every write so far; false when
    /// it is down or too slow.
    func redisWait() -> Bool {
        if redis.replicaDown { return false }
        if inFaultPhase, random.chance(0.05) { return false }
        redis.replicate()
        return true
    }

    private var inFaultPhase: Bool { now < faultSteps }

    /// Whether fault number n may happen; records it.
    private func fault(_ description: @autoclosure () -> String) -> Bool {
        faultNumber += 1
        guard !options.disabledFaults.contains(faultNumber) else { return false }
        faults.append("#\(faultNumber) at step \(now): \(description())")
        trace("FAULT #\(faultNumber): \(description())")
        return true
    }

    // MARK: the run

    func run() -> [String] {
        // Long enough for a refused key's longest backoff and the skipped rows' expiry (300 s).
        let limit = faultSteps + 40_000
        while now < limit {
            now += 1
            produce()
            if inFaultPhase { injectFault() } else if now == faultSteps { endFaults() }
            // The replica catches up whenever it likes.
            if random.chance(0.3) { redis.replicate() }
            // The server runs pipelined groups whenever it likes.
            for session in postgres.sessionsWithUnrunGroups where random.chance(0.3) { postgres.runNextGroup(session) }
            random.pick(relays).step(in: self)
            if !inFaultPhase, produced == rowsToProduce, now % 16 == 0, allRowsDone() { break }
        }
        checkFinal(quiescent: allRowsDone())
        return violations
    }

    private func produce() {
        guard produced < rowsToProduce, random.chance(0.15) else { return }
        let database = random.pick(databases)
        let key = random.pick(keys)
        let id = postgres.databases[database]!.nextID
        // Unique over the run: after a restore, ids are handed out again to other rows.
        let jid = String(format: "%024x", produced + 1)
        let queue = random.pick(queues)
        // created_at: now, as PostgreSQL's binary format has it (microseconds since 2000).
        var micros = nowMicros - 946_684_800_000_000
        var payload = #"{"class":"J","queue":"\#(queue)","args":[\#(id)],"jid":"\#(jid)""#
        if random.chance(0.1) { payload += #","at":\#(Double(nowMicros) / 1_000_000 + 3_600)"# }
        payload += "}"
        if random.chance(0.05) { payload = "not json \(jid)" }
        if random.chance(0.03) { micros = random.chance(0.5) ? .max : .min }
        postgres.insert(database: database, key: key, payload: Array(payload.utf8), jid: jid, postgresMicros: micros)
        produced += 1
    }

    private func injectFault() {
        guard random.chance(0.03) else { return }
        let relay = random.pick(relays)
        switch random.int(0...12) {
        case 0, 1:
            if fault("relay \(relay.name) killed") { relay.crash(in: self, restartAt: now + random.int(1...40)) }
        case 2, 3:
            // A zombie: paused while its session is cut, so another instance takes its lease; its
            // next action still runs when it resumes.
            if relay.isLeasing, fault("relay \(relay.name) paused, its PostgreSQL session cut") {
                relay.pausedUntil = now + random.int(10...80)
                relay.cutSession(in: self)
            }
        case 4:
            if fault("PostgreSQL restarted") { postgres.endAll(commits: { _ in self.random.chance(0.5) }) }
        case 5:
            let key = random.chance(0.5) ? "queue:\(random.pick(queues))" : random.pick(["schedule", "queues"])
            if redis.value(Array(key.utf8)) == nil, fault("Redis key \(key) set to a string") {
                redis.set(key, .string(Array("oops".utf8)))
                wrongTyped.append(key)
            }
        case 6:
            if let key = wrongTyped.popLast(), fault("Redis key \(key) fixed") { fixWrongType(key) }
        case 7:
            if fault("Redis lost the relay's fence and record keys") {
                redis.evictRelayKeys()
                duplicatesExcused = true
            }
        case 10:
            if !redis.replicaDown, fault("Redis failed over to its replica, losing the writes it had not replicated") {
                lostInFailover.formUnion(redis.failOver())
                failedOver = true
            }
        case 11:
            if fault(redis.replicaDown ? "Redis replica back" : "Redis replica killed") { redis.replicaDown.toggle() }
        case 8:
            if !postgres.hasSnapshot, fault("backup of PostgreSQL taken") { postgres.takeSnapshot() }
        case 12:
            // After a restore, enough of them that leases outrun the fences again and records
            // written before the restore are trusted: their ids may name other rows now.
            if fault("other applications use up transaction ids") { postgres.burnTransactionIDs(Int64(random.int(100...5_000))) }
        default:
            if postgres.hasSnapshot, !restored, fault("PostgreSQL restored from the backup") {
                postgres.restoreSnapshot()
                restored = true
                duplicatesExcused = true
            }
        }
    }

    private func endFaults() {
        // Every key still set to the string, including one a failover brought back after it was
        // fixed (the operator fixes it again).
        for (key, value) in redis.keys where value == .string(Array("oops".utf8)) { redis.set(String(decoding: key, as: UTF8.self), nil) }
        wrongTyped = []
        for relay in relays { relay.pausedUntil = 0 }
        redis.replicaDown = false
    }

    /// Deletes a key the run set to a string, unless a failover took the string away and the
    /// key holds jobs since.
    private func fixWrongType(_ key: String) {
        if redis.value(Array(key.utf8)) == .string(Array("oops".utf8)) { redis.set(key, nil) }
    }

    private func allRowsDone() -> Bool {
        postgres.databases.values.allSatisfy { database in
            database.rows.values.allSatisfy { !$0.isPending || (!database.hasDeadLetterTable && Self.isBad($0)) }
        }
    }

    /// A row Sidekiq could not run: it is dead-lettered, never pushed.
    static func isBad(_ row: PostgresModel.Row) -> Bool {
        row.payload.first != UInt8(ascii: "{") || row.postgresMicros == .max || row.postgresMicros == .min
    }

    // MARK: invariants

    private func checkFinal(quiescent: Bool) {
        if !quiescent {
            let pending = postgres.databases.flatMap { database, state in
                state.rows.values.filter { $0.isPending && (state.hasDeadLetterTable || !Self.isBad($0)) }.map { "\(database)/\($0.id)" }
            }
            violate("stalled: rows still pending \(pending.sorted().prefix(10)) long after the faults ended")
        }
        var expected: [String: (database: Int, row: PostgresModel.Row)] = [:]
        let present = RedisModel.jobCounts(in: redis.keys)
        for (database, state) in postgres.databases {
            for row in state.rows.values {
                let jid = row.jid
                expected[jid] = (database, row)
                let bad = Self.isBad(row)
                if let reason = row.deadLetter, !bad { violate("row \(jid) was dead-lettered: \(reason)") }
                if bad, row.enqueued { violate("row \(jid) cannot be relayed, yet it is marked enqueued") }
                guard row.enqueued else { continue }
                let count = redis.written[jid] ?? 0
                if count == 0 { violate("row \(jid) is marked enqueued, but its job never reached Redis") }
                guard failedOver else {
                    if count > 1, !duplicatesExcused { violate("row \(jid)'s job was written to Redis \(count) times") }
                    continue
                }
                // After a failover a job may have been written, lost and written again: count
                // the copies Redis holds now.
                let copies = present[jid] ?? 0
                if copies > 1, !duplicatesExcused { violate("row \(jid)'s job is in Redis \(copies) times after a failover") }
                guard copies == 0 else { continue }
                if waitReplicas {
                    violate("row \(jid) is marked enqueued, but a failover lost its job despite WAIT")
                } else if !lostInFailover.contains(jid) {
                    violate("row \(jid) is marked enqueued, but its job is not in Redis, nor lost in a failover")
                } else {
                    lostJobs += 1
                }
            }
        }
        if !restored {
            for (jid, _) in redis.written where expected[jid] == nil { violate("Redis has job \(jid) of no row") }
        }
        checkQueues(expected)
        checkSchedule()
    }

    /// Every job is in the queue it names, byte for byte, and each split key's jobs are in row order.
    private func checkQueues(_ expected: [String: (database: Int, row: PostgresModel.Row)]) {
        for (key, value) in redis.keys {
            guard key.starts(with: Array("queue:".utf8)), case .list(let jobs) = value else { continue }
            let queue = Array(key.dropFirst(6))
            var lastID: [String: Int64] = [:]
            // LPUSH puts the newest at the head; Sidekiq takes from the tail.
            for job in jobs.reversed() {
                if job.firstRange(of: Array(#""at":"#.utf8)) != nil {
                    violate("job \(RedisModel.jid(in: job) ?? "?") is in a queue with its \"at\" still in it")
                }
                guard let named = Self.queue(in: job), named == queue else {
                    violate("job \(RedisModel.jid(in: job) ?? "?") landed in queue:\(String(decoding: queue, as: UTF8.self))")
                    continue
                }
                guard !duplicatesExcused, let jid = RedisModel.jid(in: job), let origin = expected[jid] else { continue }
                let order = "\(origin.database)/\(origin.row.key)"
                if let last = lastID[order], last >= origin.row.id {
                    violate("queue \(String(decoding: queue, as: UTF8.self)) has row \(origin.row.id) of \(order) after row \(last)")
                }
                lastID[order] = origin.row.id
            }
        }
    }

    private func checkSchedule() {
        guard case .zset(let jobs) = redis.value(Array("schedule".utf8)) else { return }
        for job in jobs.keys where job.firstRange(of: Array(#""enqueued_at""#.utf8)) != nil || job.firstRange(of: Array(#""at":"#.utf8)) != nil {
            violate("scheduled job \(RedisModel.jid(in: job) ?? "?") keeps at or enqueued_at")
        }
    }

    /// The raw bytes of a job's `queue` (the simulation's payloads have no escapes).
    static func queue(in job: [UInt8]) -> [UInt8]? {
        let marker = Array(#""queue":""#.utf8)
        guard let start = job.firstRange(of: marker)?.upperBound, let end = job[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return Array(job[start..<end])
    }
}
