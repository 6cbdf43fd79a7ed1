import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// Drives one lease on one split key: carries out the actions of a ``LeaseMachine`` against
/// PostgreSQL and Redis and feeds their answers back. The machine decides; this only performs.
///
/// Statements go down the PostgreSQL connection's pipeline in groups, each its own transaction, so
/// that neither server waits for the other: while Redis takes batch k, PostgreSQL marks batch k-1
/// and fetches batch k+1.
struct LeaseRun {
    /// What a lease needs to know of the configuration, and nothing else.
    struct Settings {
        var queries: OutboxQueries
        var keys: SidekiqKeys
        var sidekiq: SidekiqJobEncoder
        /// The most rows per push (`--batch-size`).
        var batchSize: Int
        /// The most rows per fetch: PostgreSQL fetches and marks pages of at least
        /// ``minimumPageSize`` rows, whatever the batch size, and Redis takes them in batches.
        var pageSize: Int
        var batchesPerLease: Int
        var maxBatchBytes: Int
        var reliableJobGemLock: ReliableJobGemLock?
        /// How many times a lease whose key is drained waits for a notification, and how long.
        var lingers = 100
        var lingerSeconds = 0.02

        /// The least rows per fetch: a keyset page of 1,000 keeps PostgreSQL's marking near its
        /// own rate, where pages of 100 left it waiting on round trips.
        static let minimumPageSize = 1_000

        init(_ configuration: RelayConfiguration) {
            queries = configuration.queries
            keys = configuration.keys
            sidekiq = configuration.sidekiq
            batchSize = configuration.batchSize
            pageSize = max(configuration.batchSize, Self.minimumPageSize)
            lingerSeconds = min(configuration.sleepOnEmpty, lingerSeconds)
            batchesPerLease = configuration.batchesPerLease
            maxBatchBytes = configuration.maxBatchBytes
            reliableJobGemLock = configuration.reliableJobGemLock
        }
    }

    let configuration: Settings
    let postgres: PostgresConnection
    /// Where pages are fetched: a second session, so that PostgreSQL reads page k+1 on one core
    /// while the leasing session marks page k-1 on the other; or the leasing session itself.
    /// Safe because every fetch but a lease's first starts after the last id fetched, above every
    /// row a mark in flight names, and a lease's first is sent once the marks before it committed.
    let reader: PostgresConnection
    let redis: FencedRedis
    /// The outbox table as PostgreSQL resolves it, `schema.table`, part of every lease key.
    let resolvedTable: String
    /// `<system identifier>:<database oid>`, which scopes the fencing tokens as the locks are.
    let cluster: String
    let logger: Logger
    let stop: StopSignal
    let nowMicros: () -> Int64
    let makeJID: () -> String
    /// Health, metrics and the monotonic clock for durations.
    let telemetry: RelayTelemetry
    /// Waits up to the given seconds for a notification on the LISTEN connection: whether one
    /// came that may be for the key (false at once without a LISTEN connection, or on a stop).
    /// Nil: never linger.
    var waitForNotification: ((Double, SplitKey) -> Bool)? = nil

    typealias Outcome = LeaseMachine.Outcome

    /// Relays `key`'s pending rows under a lease (nothing when the key is leased elsewhere).
    func run(_ key: SplitKey, skipped: inout SkippedRows, tempos: inout [SplitKey: Int]) throws -> Outcome {
        let queries = configuration.queries
        let lease = LeaseKey(table: resolvedTable, format: queries.leaseFormat, splitKey: key)
        let fence = FencedPush.Keys(lease: lease, cluster: cluster, namespace: configuration.keys.namespace)
        let metadata: Logger.Metadata = ["outbox.split_key": "\(key)"]
        // Statements sent while a pipeline is in flight must be prepared before. The dead-letter
        // table may be missing: bad rows are then skipped, and the next lease tries again.
        try reader.prepareAhead(statement(.fetch(limit: 1, after: nil), key: key, skipped: skipped))
        try postgres.prepareAhead(queries.markEnqueued([]))
        var machine = LeaseMachine(
            tempo: LeaseTempo(
                maximumBatches: configuration.batchesPerLease, batchSize: configuration.batchSize, carriedLimit: tempos[key],
                pageSize: configuration.pageSize, lingers: waitForNotification == nil ? 0 : configuration.lingers),
            deadLetterProblem: try deadLetterProblem(), overlapsPushes: true)
        var locked = false
        var gemLocked = false
        defer {
            if locked || gemLocked {
                // After a failure with a pipeline in flight, its results come first.
                while postgres.isAwaitingResults { _ = try? postgres.receiveNext() }
            }
            while reader.isAwaitingResults { _ = try? reader.receiveNext() }
            if locked, postgres.isHealthy { _ = try? postgres.query(queries.releaseLease(lease)) }
            if gemLocked, postgres.isHealthy, let gemLock = configuration.reliableJobGemLock { _ = try? postgres.query(gemLock.unlock) }
        }
        let started = telemetry.monotonicMicros()
        var batchStarted = started
        var action = machine.start()
        var fetchedRows: [OutboxRow]?
        while true {
            if stop.isStopRequested { machine.requestStop() }
            do {
                switch action {
                case .tryLease:
                    var xid = try postgres.query(queries.tryLease(lease)).int64(0, 0)
                    locked = xid != nil
                    telemetry.leaseAttempt(key, acquired: locked)
                    if !locked { logger.debug("split key leased by another instance", metadata: metadata) }
                    // Serving sidekiq-reliable_job's table, the relay also holds the gem's own
                    // lock, so the gem's enqueuer, if it runs too, never pushes a job twice.
                    if locked, let gemLock = configuration.reliableJobGemLock {
                        gemLocked = try postgres.query(gemLock.tryLock).bool(0, 0) == true
                        if !gemLocked {
                            _ = try postgres.query(queries.releaseLease(lease))
                            locked = false
                            xid = nil
                            logger.debug("sidekiq-reliable_job's own enqueuer holds its lock; skipping the table for now", metadata: metadata)
                        }
                    }
                    action = machine.leaseAnswered(xid: xid)
                case .claim(let xid, let rewound):
                    action = machine.claimAnswered(try redis.claim(fence, xid: xid, rewound: rewound))
                case .askNextTransactionID:
                    guard let next = try postgres.query(OutboxQueries.nextTransactionID).int64(0, 0) else {
                        throw RelayProblem.unexpectedReply("next transaction id", "NULL")
                    }
                    action = machine.nextTransactionID(next)
                case .send(let statements):
                    for (connection, group) in split(statements) {
                        try connection.send(group.map { statement($0, key: key, skipped: skipped) }, binary: true)
                    }
                    action = machine.sent()
                case .receive(.fetch(let limit, _)):
                    let rows = try reader.receiveNext(decoding: { Self.fetchedRow($0) })
                    let available = OutboxQueries.pendingWithinLimit(
                        returned: rows.count, limit: limit, lastRunningBytes: rows.last?.1, maxBytes: configuration.maxBatchBytes)
                    // Kept until the machine asks for their plan, after the next fetch and the
                    // previous mark are on their way to PostgreSQL.
                    fetchedRows = rows.map(\.0)
                    action = machine.fetched(ids: rows.map(\.0.id), available: available)
                case .plan:
                    action = machine.planned(chunks: plan(fetchedRows.take() ?? [], pushSize: machine.pushSize, alreadyPushed: machine.alreadyPushed))
                case .linger:
                    let notified = waitForNotification?(configuration.lingerSeconds, key) ?? false
                    if stop.isStopRequested { machine.requestStop() }
                    logger.debug(notified ? "notified while lingering: fetching again" : "nothing arrived while lingering", metadata: metadata)
                    action = machine.lingered(notified: notified)
                case .receive(.mark(let ids, _)):
                    _ = try postgres.receiveNext()
                    let now = telemetry.monotonicMicros()
                    telemetry.batchRelayed(key, jobs: ids.count, durationMicros: now - batchStarted)
                    batchStarted = now
                    logger.debug("batch relayed", metadata: metadata.merging(["outbox.jobs": "\(ids.count)"]) { $1 })
                    action = machine.marked()
                case .receive(.deadLetter(let rejections)):
                    action = machine.deadLettered(try deadLettered(rejections, key: key))
                case .push(let plan, let token, let record):
                    action = machine.pushAnswered(try redis.push(plan, keys: fence, sidekiq: configuration.keys, fence: token, record: .whole(record)))
                case .sendPushes(let plans, let token, let records):
                    _ = try redis.sendPushes(zip(plans, records).map { ($0, fence, token, $1) }, sidekiq: configuration.keys)
                    action = machine.pushSent()
                case .receivePush:
                    action = machine.pushesAnswered(try redis.receivePushes())
                case .skip(let rejections, let reason):
                    skip(rejections, because: reason, key: key, skipped: &skipped)
                    action = machine.skipped()
                case .releaseRedis(let token, let remaining):
                    // Pushed rows are marked now, so Redis may forget them, except those of an
                    // earlier holder this lease did not reach.
                    try redis.release(fence, fence: token, remaining: remaining)
                    action = machine.redisReleased()
                case .releaseLease:
                    _ = try postgres.query(queries.releaseLease(lease))
                    locked = false
                    if gemLocked, let gemLock = configuration.reliableJobGemLock {
                        _ = try postgres.query(gemLock.unlock)
                        gemLocked = false
                    }
                    action = machine.leaseReleased()
                case .finished(let outcome):
                    finished(outcome, key: key, tempos: &tempos, started: started, metadata: metadata)
                    return outcome
                case .abandon(let failure):
                    throw Self.error(failure)
                }
            } catch {
                // The lease is abandoned with its record: the next holder's claim learns what
                // Redis has. The connection that failed is dropped by the caller.
                _ = machine.failed(.serverFailed("\(error)"))
                throw error
            }
        }
    }

    /// The error a lease's failure is reported and recovered from as.
    static func error(_ failure: LeaseMachine.Failure) -> any Error {
        switch failure {
        case .fenced(let detail): RelayProblem.fenced(detail)
        case .unconfirmed(let detail): RedisError(.commandFailed, "Redis replicas did not confirm \(detail); the rows stay pending until they do")
        case .serverFailed(let detail): RelayProblem.unexpectedReply("the lease protocol", detail)
        }
    }

    /// Passes over rows that can be neither relayed nor dead-lettered, reporting each once.
    func skip(_ rejections: [BatchPlan.Rejection], because reason: String, key: SplitKey, skipped: inout SkippedRows) {
        for rejection in rejections where skipped.insert(rejection.id, key: key) {
            logger.error(
                "row cannot be relayed: \(rejection.reason); it stays pending and is skipped because \(reason)",
                metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
        }
    }

    /// `logRelayed`: log the lease's "relayed jobs" line (a group logs one line for all its keys).
    func finished(
        _ outcome: Outcome, key: SplitKey, tempos: inout [SplitKey: Int], started: Int64, metadata: @autoclosure () -> Logger.Metadata,
        logRelayed: Bool = true
    ) {
        guard outcome.leased else { return }
        tempos[key] = outcome.carriedLimit
        if let rewound = outcome.rewoundFrom {
            logger.warning(
                "the lease's fence in Redis (\(rewound)) is ahead of PostgreSQL's transaction ids: the database was restored from a backup or a standby that was behind was promoted; fencing goes on in a new epoch",
                metadata: metadata().merging(["outbox.fence": "\(outcome.fence ?? "?")"]) { $1 })
        }
        if outcome.inherited > 0 {
            logger.info(
                "an earlier holder pushed rows it did not mark; marked them without pushing again",
                metadata: metadata().merging(["outbox.jobs": "\(outcome.inherited)"]) { $1 })
        }
        if outcome.relayed > 0, logRelayed {
            logger.info(
                "relayed jobs",
                metadata: metadata().merging([
                    "outbox.jobs": "\(outcome.relayed)", "outbox.duration_ms": "\((telemetry.monotonicMicros() - started) / 1000)",
                ]) { $1 })
        }
    }

    /// The page's rows planned in chunks of at most `pushSize` rows, in row order. The rows are
    /// handed over, not kept: their payloads are let go as their jobs are built, chunk by chunk
    /// from the end of the page.
    private func plan(_ rows: consuming [OutboxRow], pushSize: Int, alreadyPushed: RecordedRows) -> [BatchPlan] {
        var rows = rows
        let now = nowMicros()
        var chunks: [BatchPlan] = []
        repeat {
            let count = rows.count % pushSize == 0 ? min(pushSize, rows.count) : rows.count % pushSize
            let chunk = Array(rows.suffix(count))
            rows.removeLast(count)
            chunks.append(BatchPlan(rows: chunk, encoder: configuration.sidekiq, nowMicros: now, alreadyPushed: alreadyPushed, makeJID: makeJID))
        } while !rows.isEmpty
        return chunks.reversed()
    }

    /// A group of the machine's statements by the connection that runs it: fetches on the reader,
    /// the rest on the leasing session; the whole group there when the reader is that session.
    private func split(_ statements: [LeaseMachine.Statement]) -> [(PostgresConnection, [LeaseMachine.Statement])] {
        guard reader !== postgres else { return [(postgres, statements)] }
        let (fetches, others) = LeaseMachine.Statement.split(statements)
        return [(reader, fetches), (postgres, others)].filter { !$0.1.isEmpty }
    }

    /// The SQL of a statement of the machine.
    private func statement(_ statement: LeaseMachine.Statement, key: SplitKey, skipped: SkippedRows) -> SQLStatement {
        let queries = configuration.queries
        switch statement {
        case .fetch(let limit, let after):
            return queries.fetch(key, limit: limit, maxBytes: configuration.maxBatchBytes, skipping: skipped.ids(for: key), after: after)
        case .mark(let ids, let scheduled):
            return queries.markEnqueued(ids, scheduled: scheduled)
        case .deadLetter(let rejections):
            return queries.deadLetter(rejections.map { (id: $0.id, reason: $0.reason) })
        }
    }

    /// Takes the result of moving rows into the dead-letter table. When that failed (most often
    /// because the table was never created), the rows stay pending and this process skips them.
    private func deadLettered(_ rejections: [BatchPlan.Rejection], key: SplitKey) throws -> LeaseMachine.DeadLettered {
        let result = try deadLetterResult { () throws(PostgresError) in _ = try postgres.receiveNext() }
        if result == .moved { reportDeadLettered(rejections, key: key) }
        return result
    }

    func deadLetterResult(_ body: () throws(PostgresError) -> Void) throws(PostgresError) -> LeaseMachine.DeadLettered {
        do {
            try body()
        } catch where error.code == .connectionLost {
            throw error
        } catch {
            return .failed(why(error))
        }
        return .moved
    }

    func reportDeadLettered(_ rejections: [BatchPlan.Rejection], key: SplitKey) {
        telemetry.deadLettered(key, rows: rejections.count)
        for rejection in rejections {
            logger.error(
                "row dead-lettered: \(rejection.reason)", metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
        }
    }

    /// Prepares the dead-letter statement; returns why it cannot be, unless the connection is lost.
    func deadLetterProblem() throws(PostgresError) -> String? {
        let prepared = Result { () throws(PostgresError) in try postgres.prepareAhead(configuration.queries.deadLetter([])) }
        guard case .failure(let error) = prepared else { return nil }
        if error.code == .connectionLost { throw error }
        return why(error)
    }

    private func why(_ error: PostgresError) -> String {
        error.isUndefinedTable
            ? "the dead-letter table \(configuration.queries.deadLetterTable) does not exist (run 'outbox-relay migrate')"
            : "it could not be dead-lettered: \(error)"
    }

    /// A row of ``OutboxQueries/fetch(_:limit:maxBytes:skipping:after:)``, and its running byte
    /// total; its columns start at `first`.
    static func fetchedRow(_ row: borrowing PostgresRow, from first: Int = 0) -> (OutboxRow, Int64) {
        let outboxRow = OutboxRow(
            id: row.int64(first)!, payload: row.bytes(first + 1), postgresMicros: row.int64(first + 2), jid: row.text(first + 3))
        return (outboxRow, row.int64(first + 4) ?? 0)
    }
}
