import Logging
import OutboxRelay
import OutboxRelayIO

/// `--cleanup`: once a minute, deletes rows enqueued longer ago than the retention, in chunks of
/// 1,000 by id (at most `--cleanup-limit` a round), never a pending row.
struct CleanupRounds {
    private let policy: CleanupPolicy?
    private let queries: OutboxQueries
    private let logger: Logger
    private var lastRound: Int64?

    init(policy: CleanupPolicy?, queries: OutboxQueries, logger: Logger) {
        self.policy = policy
        self.queries = queries
        self.logger = logger
    }

    /// Runs a round when one is due at `nowMicros` (monotonic); `chunkDeleted` runs after each chunk.
    mutating func runIfDue(postgres: PostgresConnection, nowMicros: Int64, isStopRequested: () -> Bool, chunkDeleted: () -> Void) throws {
        guard let policy else { return }
        if let lastRound, nowMicros - lastRound < CleanupPolicy.intervalMicros { return }
        lastRound = nowMicros
        var deleted = 0
        var last: Int?
        while let chunk = policy.nextChunk(deletedSoFar: deleted, lastChunkDeleted: last), !isStopRequested() {
            let rows = try postgres.query(queries.cleanup(olderThan: policy.retention.seconds, limit: chunk))
            deleted += rows.count
            last = rows.count
            chunkDeleted()
        }
        if deleted > 0 {
            logger.info("cleaned up enqueued rows", metadata: ["outbox.rows": "\(deleted)", "outbox.older_than": "\(policy.retention)"])
        }
    }
}
