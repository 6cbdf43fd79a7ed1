import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// One lease on one split key: take it in PostgreSQL (with its fencing token), claim its fence in
/// Redis, relay batches (``LeasePipeline``) until the key is drained or the tempo
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
            // After a failure with a pipeline in flight, its results come first.
            while postgres.isAwaitingResults { _ = try? postgres.receiveNext() }
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
        var pipeline = LeasePipeline(
            lease: self, held: LeasePipeline.Held(key: key, fence: fence, token: token, alreadyPushed: alreadyPushed),
            tempo: LeaseTempo(maximumBatches: configuration.batchesPerLease, batchSize: configuration.batchSize, carriedLimit: tempos[key]))
        try pipeline.run(skipped: &skipped)
        // Pushed rows are marked now, so Redis may forget them, except those of an earlier holder
        // this lease did not reach. On any failure above this is skipped, so the next holder
        // learns which rows are in Redis but perhaps not marked.
        try redis.release(fence, token: token, remaining: pipeline.ledger.remaining)
        tempos[key] = pipeline.tempo.leftBacklog ? pipeline.tempo.limit : nil
        if pipeline.relayed > 0 {
            logger.info(
                "relayed jobs",
                metadata: metadata.merging([
                    "outbox.jobs": "\(pipeline.relayed)", "outbox.batches": "\(pipeline.tempo.batches)",
                    "outbox.duration_ms": "\((nowMicros() - started) / 1000)",
                ]) { $1 })
        }
        return Outcome(handled: pipeline.handled, relayed: pipeline.relayed)
    }
}
