import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// One lease on one split key: take it in PostgreSQL (with its fencing token), claim its fence in
/// Redis, relay batches (fetch, push, mark, dead-letter) until the key is drained or the tempo
/// says to let others have it, then release it in Redis and in PostgreSQL.
struct LeaseRun {
    let configuration: RelayConfiguration
    let postgres: PostgresConnection
    let redis: FencedRedis
    /// The outbox table as PostgreSQL resolves it, `schema.table`, part of every lease key.
    let resolvedTable: String
    /// The PostgreSQL cluster's system identifier, which scopes the fencing tokens.
    let cluster: String
    let logger: Logger
    let stop: StopSignal
    let nowMicros: () -> Int64
    let makeJID: () -> String

    /// What one lease did: rows fetched (relayed or rejected) and jobs relayed.
    struct Outcome {
        let handled: Int
        let relayed: Int
    }

    /// Relays `key`'s pending rows under a lease (nothing when the key is leased elsewhere).
    func run(_ key: SplitKey, skipped: inout SkippedRows, tempos: inout [SplitKey: Int]) throws -> Outcome {
        let queries = configuration.queries
        let lease = LeaseKey(table: resolvedTable, format: queries.leaseFormat, splitKey: key)
        let metadata: Logger.Metadata = ["outbox.split_key": "\(key)"]
        let token = try postgres.query(queries.tryLease(lease)).int64(0, 0)
        Counter(
            label: RelayMetrics.leases,
            dimensions: [("split_key", RelayMetrics.label(key)), ("result", token == nil ? "held_elsewhere" : "acquired")]
        ).increment()
        guard let token else {
            logger.debug("split key leased by another instance", metadata: metadata)
            return Outcome(handled: 0, relayed: 0)
        }
        let fence = FencedPush.Keys(lease: lease, cluster: cluster, namespace: configuration.keys.namespace)
        defer {
            if postgres.isHealthy { _ = try? postgres.query(queries.releaseLease(lease)) }
        }
        let alreadyPushed: Set<Int64>
        switch try redis.claim(fence, token: token) {
        case .granted(let ids):
            alreadyPushed = ids
        case .fenced(let newer):
            // Our token is older than one Redis has seen: the lease we just got is stale news.
            throw RelayProblem.fenced("token \(token) is older than \(newer)")
        }
        if !alreadyPushed.isEmpty {
            logger.info(
                "an earlier holder pushed rows it did not mark; marking them without pushing again",
                metadata: metadata.merging(["outbox.jobs": "\(alreadyPushed.count)"]) { $1 })
        }

        let started = nowMicros()
        var tempo = LeaseTempo(
            maximumBatches: configuration.batchesPerLease, batchSize: configuration.batchSize, carriedLimit: tempos[key])
        var relayed = 0
        var handled = 0
        var lastID: Int64?
        while !stop.isStopRequested {
            let batchStarted = nowMicros()
            // The fetched rows go out of scope once encoded, so a batch is held in memory once.
            let (plan, fetched, available) = try plan(key, limit: tempo.limit, skipping: skipped.ids(for: key), after: lastID,
                alreadyPushed: alreadyPushed)
            if fetched.isEmpty { break }
            lastID = fetched.last
            if !plan.pushedIDs.isEmpty { try redis.push(plan, keys: fence, sidekiq: configuration.keys, token: token) }
            if !plan.markIDs.isEmpty { try postgres.query(queries.markEnqueued(plan.markIDs, scheduled: plan.scheduledIDs)) }
            if !plan.rejections.isEmpty { try deadLetter(plan.rejections, key: key, skipped: &skipped) }
            relayed += plan.markIDs.count
            handled += fetched.count
            Counter(label: RelayMetrics.relayed, dimensions: [("split_key", RelayMetrics.label(key))]).increment(by: plan.markIDs.count)
            Timer(label: RelayMetrics.batchDuration).recordMicroseconds(nowMicros() - batchStarted)
            logger.debug(
                "batch relayed",
                metadata: metadata.merging(["outbox.jobs": "\(plan.markIDs.count)", "outbox.rejected": "\(plan.rejections.count)"]) { $1 })
            if tempo.afterBatch(available: available) == .release { break }
        }
        // Every pushed row is marked: Redis may forget them. On any failure above this is skipped,
        // so the next holder learns which rows are in Redis but perhaps not marked.
        try redis.release(fence, token: token)
        tempos[key] = tempo.leftBacklog ? tempo.limit : nil
        if relayed > 0 {
            logger.info(
                "relayed jobs",
                metadata: metadata.merging([
                    "outbox.jobs": "\(relayed)", "outbox.batches": "\(tempo.batches)",
                    "outbox.duration_ms": "\((nowMicros() - started) / 1000)",
                ]) { $1 })
        }
        return Outcome(handled: handled, relayed: relayed)
    }

    /// Fetches the next rows of `key` and plans their push; returns the plan, the fetched ids, and
    /// how many rows were pending within `limit` before the byte cap.
    private func plan(
        _ key: SplitKey, limit: Int, skipping: [Int64], after: Int64?, alreadyPushed: Set<Int64>
    ) throws -> (BatchPlan, [Int64], Int) {
        let (rows, available) = try fetch(key, limit: limit, skipping: skipping, after: after)
        let plan = BatchPlan(
            rows: rows, encoder: configuration.sidekiq, nowMicros: nowMicros(), alreadyPushed: alreadyPushed, makeJID: makeJID)
        return (plan, rows.map(\.id), available)
    }

    /// The next rows of `key`, and how many were pending within `limit` before the byte cap.
    private func fetch(_ key: SplitKey, limit: Int, skipping: [Int64], after: Int64?) throws -> ([OutboxRow], Int) {
        let statement = configuration.queries.fetch(
            key, limit: limit, maxBytes: configuration.maxBatchBytes, skipping: skipping, after: after)
        let result = try postgres.query(statement, binary: true)
        let rows = (0..<result.count).map {
            OutboxRow(id: result.int64($0, 0)!, payload: result.bytes($0, 1)!, createdAtMicros: result.int64($0, 2)!, jid: result.text($0, 3))
        }
        return (rows, rows.isEmpty ? 0 : Int(result.int64(0, 4)!))
    }

    /// Moves rows that cannot be relayed into the dead-letter table. When that fails (most often
    /// because the table was never created), the rows stay pending and this process skips them.
    private func deadLetter(_ rejections: [BatchPlan.Rejection], key: SplitKey, skipped: inout SkippedRows) throws {
        let statement = configuration.queries.deadLetter(rejections.map { ($0.id, $0.reason) })
        do {
            try postgres.query(statement)
            Counter(label: RelayMetrics.deadLettered, dimensions: [("split_key", RelayMetrics.label(key))]).increment(by: rejections.count)
            for rejection in rejections {
                logger.error(
                    "row dead-lettered: \(rejection.reason)",
                    metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
            }
        } catch where error.code == .connectionLost {
            throw error
        } catch {
            let why = error.isUndefinedTable
                ? "the dead-letter table \(configuration.queries.deadLetterTable) does not exist (run 'outbox-relay migrate')"
                : "it could not be dead-lettered: \(error)"
            for rejection in rejections where skipped.insert(rejection.id, key: key) {
                logger.error(
                    "row cannot be relayed: \(rejection.reason); it stays pending and is skipped because \(why)",
                    metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
            }
        }
    }
}
