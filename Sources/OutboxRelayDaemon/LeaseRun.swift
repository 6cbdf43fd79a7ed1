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

    /// What one lease did: rows fetched (relayed or rejected) and jobs relayed, and why Redis
    /// refused a batch, if it did (the batch stays pending).
    struct Outcome {
        let handled: Int
        let relayed: Int
        var refused: String? = nil
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
        if let gemLock = configuration.reliableJobGemLock {
            guard try postgres.query(gemLock.tryLock).bool(0, 0) == true else {
                _ = try postgres.query(queries.releaseLease(lease))
                logger.debug("sidekiq-reliable_job's own enqueuer holds its lock; skipping the table for now", metadata: metadata)
                return Outcome(handled: 0, relayed: 0)
            }
        }
        let fence = FencedPush.Keys(lease: lease, cluster: cluster, namespace: configuration.keys.namespace)
        defer {
            // After a failure with a pipeline in flight, its results come first.
            while postgres.isAwaitingResults { _ = try? postgres.receiveNext() }
            if postgres.isHealthy { _ = try? postgres.query(queries.releaseLease(lease)) }
            if postgres.isHealthy, let gemLock = configuration.reliableJobGemLock { _ = try? postgres.query(gemLock.unlock) }
        }
        let (fenceToken, alreadyPushed) = try claim(fence, xid: token, metadata: metadata)
        if !alreadyPushed.isEmpty {
            logger.info(
                "an earlier holder pushed rows it did not mark; marking them without pushing again",
                metadata: metadata.merging(["outbox.jobs": "\(alreadyPushed.count)"]) { $1 })
        }

        let started = nowMicros()
        var pipeline = LeasePipeline(
            lease: self, held: LeasePipeline.Held(key: key, fence: fence, token: fenceToken, alreadyPushed: alreadyPushed),
            tempo: LeaseTempo(maximumBatches: configuration.batchesPerLease, batchSize: configuration.batchSize, carriedLimit: tempos[key]))
        try pipeline.run(skipped: &skipped)
        // Pushed rows are marked now, so Redis may forget them, except those of an earlier holder
        // this lease did not reach. On any failure above this is skipped, so the next holder
        // learns which rows are in Redis but perhaps not marked.
        try redis.release(fence, fence: fenceToken, remaining: pipeline.ledger.remaining)
        tempos[key] = pipeline.tempo.leftBacklog ? pipeline.tempo.limit : nil
        if pipeline.relayed > 0 {
            logger.info(
                "relayed jobs",
                metadata: metadata.merging([
                    "outbox.jobs": "\(pipeline.relayed)", "outbox.batches": "\(pipeline.tempo.batches)",
                    "outbox.duration_ms": "\((nowMicros() - started) / 1000)",
                ]) { $1 })
        }
        return Outcome(handled: pipeline.handled, relayed: pipeline.relayed, refused: pipeline.refused)
    }

    /// Claims the lease's fence in Redis. A fence newer than this lease's transaction id means a
    /// zombie lease, unless that fence is not even below the cluster's next transaction id: then
    /// the database was restored or a lagging standby promoted, and this holder (whose lock the
    /// query just proved alive) starts the next fencing epoch from exactly that fence.
    private func claim(_ fence: FencedPush.Keys, xid: Int64, metadata: Logger.Metadata) throws -> (String, Set<Int64>) {
        var rewound: String?
        while true {
            switch try redis.claim(fence, xid: xid, rewound: rewound) {
            case .granted(let token, let ids):
                if rewound != nil {
                    logger.warning(
                        "the lease's fence in Redis (\(rewound!)) is ahead of PostgreSQL's transaction ids: the database was restored from a backup or a standby that was behind was promoted; fencing goes on in a new epoch",
                        metadata: metadata.merging(["outbox.fence": "\(token)"]) { $1 })
                }
                return (token, ids)
            case .fenced(let newer):
                let next = try postgres.query(OutboxQueries.nextTransactionID).int64(0, 0)
                guard rewound == nil, let next, let newerXID = FencedPush.xid(inFence: newer), newerXID >= next else {
                    // Our token is older than one Redis has seen: the lease we just got is stale news.
                    throw RelayProblem.fenced("token \(xid) is older than \(newer)")
                }
                rewound = newer
            }
        }
    }
}
