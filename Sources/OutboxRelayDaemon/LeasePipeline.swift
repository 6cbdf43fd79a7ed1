import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// The batches of one held lease, pipelined so that neither server waits for the other: while
/// Redis takes batch k, PostgreSQL marks batch k-1 and fetches batch k+1.
///
/// Statements go down the connection's pipeline in groups, each its own transaction. Round k
/// sends `[fetch k+1, mark k-1]`, plans batch k and pushes it to Redis, then collects results up
/// to fetch k+1; the marks of earlier rounds come first, and PostgreSQL already has the next
/// mark queued behind them. A batch is marked only after its push succeeded, and the fence's
/// record covers every pushed batch whose mark has not committed (``PushLedger``), so whoever
/// holds the lease next marks those rows instead of pushing them again. Bad rows go to the
/// dead-letter table in a group of their own, so a missing table cannot roll back a mark.
struct LeasePipeline {
    /// The lease being served.
    struct Held {
        let key: SplitKey
        let fence: FencedPush.Keys
        /// The fence this lease claimed, `<epoch>:<xid>`.
        let token: String
        /// Rows an earlier holder pushed and perhaps did not mark: marked, never pushed again.
        let alreadyPushed: Set<Int64>
    }

    /// Fetched rows, and how many were pending within the fetch's limit before the byte cap.
    struct Batch {
        let rows: [OutboxRow]
        let available: Int
    }

    /// The rows of a pushed batch to mark enqueued.
    struct Marks {
        let markIDs: [Int64]
        let scheduledIDs: [Int64]
        let rejected: Int
    }

    /// What the next result in the pipeline answers.
    private enum Expected {
        case fetch(limit: Int)
        case mark(Marks)
        case deadLetter([BatchPlan.Rejection])
    }

    /// The lease's connections, configuration and clocks.
    let lease: LeaseRun
    let held: Held

    private(set) var tempo: LeaseTempo
    private(set) var ledger: PushLedger
    /// Jobs relayed (marked) and rows fetched so far.
    private(set) var relayed = 0
    private(set) var handled = 0
    private var lastID: Int64?
    /// The batch pushed last, whose mark is not sent yet.
    private var unmarked: Marks?
    private var expected: [Expected] = []
    private var batchStarted: Int64
    /// Why Redis refused this lease's last batch, if it did: the batch stays pending.
    private(set) var refused: String?
    /// Why bad rows cannot be dead-lettered during this lease, if they cannot.
    private var deadLetterProblem: PostgresError?

    init(lease: LeaseRun, held: Held, tempo: LeaseTempo) {
        self.lease = lease
        self.held = held
        self.tempo = tempo
        self.ledger = PushLedger(alreadyPushed: held.alreadyPushed)
        self.batchStarted = lease.nowMicros()
    }

    /// Relays batches until the key is drained, the tempo lets go of it, or a lease.stop is requested;
    /// returns with every pushed row marked.
    mutating func run(skipped: inout SkippedRows) throws {
        let queries = lease.configuration.queries
        // Statements sent while a pipeline is in flight must be prepared before. The dead-letter
        // table may be missing: bad rows are then skipped, and the next lease tries again.
        for statement in [fetchStatement(limit: 1, skipping: [], after: nil), queries.markEnqueued([])] {
            try lease.postgres.prepareAhead(statement)
        }
        deadLetterProblem = try deadLetterStatementProblem()
        var fetched: Batch?
        if !lease.stop.isStopRequested {
            let limit = tempo.limit
            let statement = fetchStatement(limit: limit, skipping: skipped.ids(for: held.key), after: nil)
            fetched = batch(try lease.postgres.query(statement, decoding: Self.fetchedRow), limit: limit)
        }
        while fetched != nil {
            // The batch is handed over, not kept here: its rows and jobs are freed once pushed.
            guard try round(fetched.take()!, skipped: &skipped) else { break }
            fetched = try collect(skipped: &skipped)
        }
        // A refused push may leave the next fetch and the previous mark in flight.
        while !expected.isEmpty { _ = try collect(skipped: &skipped) }
        if let last = unmarked {
            if !last.markIDs.isEmpty { try lease.postgres.query(queries.markEnqueued(last.markIDs, scheduled: last.scheduledIDs)) }
            book(last)
            unmarked = nil
        }
    }

    /// Sends the fetch of the next batch and the mark of the previous one, then plans `batch`
    /// and pushes it to Redis while PostgreSQL works. False when the batch is empty: the key is
    /// drained.
    private mutating func round(_ batch: consuming Batch, skipped: inout SkippedRows) throws -> Bool {
        let ids = batch.rows.map(\.id)
        ledger.fetched(ids, after: lastID, drained: ids.isEmpty)
        guard let last = ids.last else { return false }
        lastID = last
        handled += ids.count
        let fetchAgain = tempo.afterBatch(available: batch.available) == .fetchAgain && !lease.stop.isStopRequested
        var group: [(SQLStatement, Expected)] = []
        if fetchAgain {
            let statement = fetchStatement(limit: tempo.limit, skipping: skipped.ids(for: held.key), after: last)
            group.append((statement, .fetch(limit: tempo.limit)))
        }
        if let marks = unmarked.take(), !marks.markIDs.isEmpty {
            group.append((lease.configuration.queries.markEnqueued(marks.markIDs, scheduled: marks.scheduledIDs), .mark(marks)))
        }
        try send(group)

        let plan = BatchPlan(
            rows: (consume batch).rows, encoder: lease.configuration.sidekiq, nowMicros: lease.nowMicros(), alreadyPushed: held.alreadyPushed,
            makeJID: lease.makeJID)
        if !plan.pushedIDs.isEmpty {
            let push = try lease.redis.push(
                plan, keys: held.fence, sidekiq: lease.configuration.keys, fence: held.token, record: ledger.record(pushing: plan))
            if case .refused(let reason) = push {
                // Nothing of the batch reached Redis: it stays pending, and so does the rest of
                // the key, so its order holds. The marks in flight still commit.
                refused = reason
                return false
            }
            ledger.pushed(plan)
        }
        unmarked = Marks(markIDs: plan.markIDs, scheduledIDs: plan.scheduledIDs, rejected: plan.rejections.count)
        if let deadLetterProblem, !plan.rejections.isEmpty {
            skip(plan.rejections, because: deadLetterProblem, skipped: &skipped)
        } else if !plan.rejections.isEmpty {
            let reasons = plan.rejections.map { (id: $0.id, reason: $0.reason) }
            try send([(lease.configuration.queries.deadLetter(reasons), .deadLetter(plan.rejections))])
        }
        return true
    }

    private mutating func send(_ group: [(SQLStatement, Expected)]) throws {
        guard !group.isEmpty else { return }
        try lease.postgres.send(group.map(\.0), binary: true)
        expected += group.map(\.1)
    }

    /// Collects results in the order sent, booking marks and dead letters, up to the next
    /// fetch's rows; nil when no fetch was pending.
    private mutating func collect(skipped: inout SkippedRows) throws -> Batch? {
        while !expected.isEmpty {
            switch expected.removeFirst() {
            case .fetch(let limit):
                return batch(try lease.postgres.receiveNext(decoding: Self.fetchedRow), limit: limit)
            case .mark(let marks):
                _ = try lease.postgres.receiveNext()
                book(marks)
            case .deadLetter(let rejections):
                try deadLettered(rejections, skipped: &skipped)
            }
        }
        return nil
    }

    /// Books a batch whose mark committed.
    private mutating func book(_ marks: Marks) {
        ledger.marked(marks.markIDs)
        relayed += marks.markIDs.count
        Counter(label: RelayMetrics.relayed, dimensions: [("split_key", RelayMetrics.label(held.key))]).increment(by: marks.markIDs.count)
        let now = lease.nowMicros()
        Timer(label: RelayMetrics.batchDuration).recordMicroseconds(now - batchStarted)
        batchStarted = now
        lease.logger.debug(
            "batch relayed",
            metadata: ["outbox.split_key": "\(held.key)", "outbox.jobs": "\(marks.markIDs.count)", "outbox.rejected": "\(marks.rejected)"])
    }

    /// Takes the result of moving rows into the dead-letter table. When that failed (most often
    /// because the table was never created), the rows stay pending and this process skips them.
    private func deadLettered(_ rejections: [BatchPlan.Rejection], skipped: inout SkippedRows) throws {
        let key = held.key
        do {
            _ = try lease.postgres.receiveNext()
            Counter(label: RelayMetrics.deadLettered, dimensions: [("split_key", RelayMetrics.label(key))]).increment(by: rejections.count)
            for rejection in rejections {
                lease.logger.error(
                    "row dead-lettered: \(rejection.reason)",
                    metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
            }
        } catch where error.code == .connectionLost {
            throw error
        } catch {
            skip(rejections, because: error, skipped: &skipped)
        }
    }

    /// Prepares the dead-letter statement; returns why it cannot be, unless the connection is lost.
    private func deadLetterStatementProblem() throws(PostgresError) -> PostgresError? {
        let prepared = Result { () throws(PostgresError) in try lease.postgres.prepareAhead(lease.configuration.queries.deadLetter([])) }
        guard case .failure(let error) = prepared else { return nil }
        if error.code == .connectionLost { throw error }
        return error
    }

    /// Rows that could not be dead-lettered stay pending; this process passes over them.
    private func skip(_ rejections: [BatchPlan.Rejection], because error: PostgresError, skipped: inout SkippedRows) {
        let why = error.isUndefinedTable
            ? "the dead-letter table \(lease.configuration.queries.deadLetterTable) does not exist (run 'outbox-relay migrate')"
            : "it could not be dead-lettered: \(error)"
        for rejection in rejections where skipped.insert(rejection.id, key: held.key) {
            lease.logger.error(
                "row cannot be relayed: \(rejection.reason); it stays pending and is skipped because \(why)",
                metadata: ["outbox.split_key": "\(held.key)", "outbox.row_id": "\(rejection.id)"])
        }
    }

    private func fetchStatement(limit: Int, skipping: [Int64], after: Int64?) -> SQLStatement {
        lease.configuration.queries.fetch(held.key, limit: limit, maxBytes: lease.configuration.maxBatchBytes, skipping: skipping, after: after)
    }

    /// A row of ``OutboxQueries/fetch(_:limit:maxBytes:skipping:after:)``, and its running byte total.
    private static func fetchedRow(_ row: PostgresRow) -> (OutboxRow, Int64) {
        let outboxRow = OutboxRow(id: row.int64(0)!, payload: row.bytes(1), postgresMicros: row.int64(2), jid: row.text(3))
        return (outboxRow, row.int64(4) ?? 0)
    }

    private func batch(_ fetched: [(OutboxRow, Int64)], limit: Int) -> Batch {
        let available = OutboxQueries.pendingWithinLimit(
            returned: fetched.count, limit: limit, lastRunningBytes: fetched.last?.1, maxBytes: lease.configuration.maxBatchBytes)
        return Batch(rows: fetched.map(\.0), available: available)
    }
}
