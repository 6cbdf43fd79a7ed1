import Logging
import OutboxRelay
import OutboxRelayIO

/// The relay's connections and what it learns on connecting: the PostgreSQL session that takes
/// the leases, a second one that reads a lease's next page while the first marks the pages before
/// it (res layout only: the reliable_job layout's fetch writes), a third that LISTENs for
/// wake-ups (optional: without it the relay polls), and Redis with the relay's scripts loaded.
/// Each is (re)opened when missing or broken, and dropped on a failure, so its leases die with
/// its session.
final class RelayConnections {
    /// What opening the connections needs, and nothing else.
    struct Settings {
        var databaseURL: String
        var databasePassword: String?
        var networkTimeout: Double
        var queries: OutboxQueries
        var table: TableName
        var notifyChannel: String
        var redis: RedisEndpoint
        var redisTLS: RedisTLS
        /// Sentinel and `WAIT` (issue 15).
        var redisReplication = RedisReplication()
    }

    private let settings: Settings
    private let logger: Logger
    private(set) var postgres: PostgresConnection?
    private(set) var listener: PostgresConnection?
    /// Fetches a lease's pages, so that PostgreSQL reads page k+1 on one core while the leasing
    /// session marks page k-1 on the other. Nil with the reliable_job layout.
    private(set) var reader: PostgresConnection?
    private(set) var redis: FencedRedis?
    /// The outbox table as PostgreSQL resolves it, `schema.table`, part of every lease key.
    private(set) var resolvedTable = ""
    /// `<system identifier>:<database oid>`, which scopes the fences as the locks are scoped.
    private(set) var cluster = ""
    private var lastListenProblem: String?
    /// With `--redis-sentinels`: finds the master on each (re)connect.
    private lazy var sentinel = FencedRedis.sentinel(settings.redisReplication, tls: settings.redis.tls)

    init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// Opens whatever is missing or broken; throws when PostgreSQL or Redis cannot be reached.
    func ensure() throws {
        if postgres?.isHealthy != true {
            postgres = nil
            postgres = try openLeasingSession()
        }
        if !settings.queries.fetchWrites, reader?.isHealthy != true {
            reader = nil
            let connection = try openTimedSession()
            connection.role = "reading session"
            connection.writesRows = false
            reader = connection
        }
        if listener?.isHealthy != true {
            listener = nil
            openListener()
        }
        if redis == nil || redis?.isBroken == true {
            redis = nil
            redis = try FencedRedis.open(
                settings.redis, timeout: settings.networkTimeout, tls: settings.redisTLS, replication: settings.redisReplication, sentinel: sentinel)
            logger.debug("connected to Redis", metadata: ["outbox.redis": "\(redis!.endpoint)"])
        }
    }

    private func openLeasingSession() throws -> PostgresConnection {
        let connection = try openTimedSession()
        let queries = settings.queries
        let resolved = try connection.query(queries.resolveTable)
        guard resolved.count == 1, let schema = resolved.text(0, 0), let name = resolved.text(0, 1) else {
            throw RelayProblem.tableMissing(settings.table.description)
        }
        resolvedTable = "\(schema).\(name)"
        let identity = try connection.query(OutboxQueries.clusterIdentity)
        cluster = FencedPush.scope(system: identity.text(0, 0) ?? "", database: identity.text(0, 1) ?? "")
        if try connection.query(queries.hasPendingIndex).bool(0, 0) != true {
            logger.warning(
                "the outbox table has no index on pending rows; fetches will slow down as the backlog grows. Run 'outbox-relay migrate' to add it",
                metadata: ["outbox.index": "\(queries.pendingIndexName)"])
        }
        logger.debug("connected to PostgreSQL", metadata: ["outbox.table": "\(resolvedTable)"])
        return connection
    }

    /// A session whose statements time out after `--network-timeout`.
    private func openTimedSession() throws -> PostgresConnection {
        let connection = try openPostgres()
        try connection.execute(ConnectionSettings.sessionSQL(timeout: settings.networkTimeout))
        return connection
    }

    private func openListener() {
        do {
            let connection = try openPostgres()
            try connection.execute("LISTEN \"\(settings.notifyChannel)\"")
            listener = connection
            lastListenProblem = nil
        } catch {
            // Once per problem: it is tried again every round.
            let message = "cannot LISTEN for wake-ups, polling instead: \(error)"
            message == lastListenProblem ? logger.debug("\(message)") : logger.warning("\(message)")
            lastListenProblem = message
        }
    }

    private func openPostgres() throws(PostgresError) -> PostgresConnection {
        try PostgresConnection(
            connectionString: settings.databaseURL, settings: ConnectionSettings.postgres(timeout: settings.networkTimeout),
            password: settings.databasePassword)
    }

    /// Drops the leasing session (its leases go with it) and its reader, or the Redis connection,
    /// after a failure.
    func dropPostgres() {
        postgres = nil
        reader = nil
    }
    func dropRedis() { redis = nil }

    /// Whether wake-ups arrived on the LISTEN connection since the last look.
    func notified() -> Bool {
        guard let listener else { return false }
        do {
            return try !listener.notifications().isEmpty
        } catch {
            self.listener = nil
            return false
        }
    }

    /// The wake-ups that arrived on the LISTEN connection since the last look: nil when none did,
    /// else whether every one of them may be for `key` (``SplitKey/mayBeNamed(inWakeUp:)``).
    func wakeUps(for key: SplitKey) -> Bool? {
        guard let listener else { return nil }
        do {
            let received = try listener.notifications()
            return received.isEmpty ? nil : received.allSatisfy { key.mayBeNamed(inWakeUp: $0.payload) }
        } catch {
            self.listener = nil
            return nil
        }
    }

    /// The LISTEN connection's socket, to sleep on.
    var listenSocket: Int32? { listener?.socket }

    /// Gives every lease back and closes them all.
    func close() {
        if let postgres, postgres.isHealthy {
            _ = try? postgres.query(SQLStatement("SELECT pg_advisory_unlock_all()"))
        }
        postgres = nil
        reader = nil
        listener = nil
        redis = nil
    }
}
