import Foundation
import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// The relay's main loop. It runs on one dedicated thread, because libpq and the Redis socket
/// block: connect (with backoff), then pass after pass over the split keys, leasing each in turn,
/// relaying its pending rows in batches (fetch, push, then mark) and releasing it.
public final class RelayLoop {
    private let configuration: RelayConfiguration
    private let logger: Logger
    private let stop: StopSignal
    private let notifier: SystemdNotifier
    /// The wall clock, for what is compared with wall times (a job's `at`).
    private let nowMicros: () -> Int64
    /// The monotonic clock, for every interval.
    private let monotonicMicros: () -> Int64
    private let telemetry: RelayTelemetry
    private let makeJID: () -> String
    private let random: () -> Double
    private let health: RelayHealth?
    private var lastSample: Int64?
    private static let sampleIntervalMicros: Int64 = 15_000_000

    private var postgres: PostgresConnection?
    /// A second connection that LISTENs for `migrate --notify`'s wake-ups; optional: without it
    /// the relay polls every `--sleep-on-empty` seconds.
    private var listener: PostgresConnection?
    private var redis: FencedRedis?
    private var resolvedTable = ""
    private var cluster = ""
    private var skipped = SkippedRows()
    /// Keys whose last batch Redis refused, waiting before their next lease.
    private var refusedKeys = RefusedKeys()
    /// Per key, the batch size a lease reached when it let go of a key that still had a backlog.
    private var tempos: [SplitKey: Int] = [:]
    private var rotation = KeyRotation(start: Int(getpid()))
    private var backoff = Backoff()
    private var announcedReady = false
    private var watchdog: WatchdogTimer
    /// Jobs relayed since start, for systemd's STATUS line.
    private var relayedTotal = 0
    private var lastCleanup: Int64?
    private var lastProblem: String?
    private var lastListenProblem: String?

    public init(
        configuration: RelayConfiguration, logger: Logger, stop: StopSignal, notifier: SystemdNotifier = SystemdNotifier(),
        nowMicros: @escaping () -> Int64 = RelayLoop.systemMicros, makeJID: @escaping () -> String = RelayLoop.randomJID,
        random: @escaping () -> Double = { Double.random(in: 0...1) }, health: RelayHealth? = nil,
        monotonicMicros: @escaping () -> Int64 = RelayClock.monotonicMicros
    ) {
        self.health = health
        self.configuration = configuration
        self.logger = logger
        self.stop = stop
        self.notifier = notifier
        self.nowMicros = nowMicros
        self.monotonicMicros = monotonicMicros
        self.telemetry = RelayTelemetry(health: health, splitKeys: configuration.splitKeys, monotonicMicros: monotonicMicros)
        self.makeJID = makeJID
        self.random = random
        self.watchdog = WatchdogTimer(intervalMicros: notifier.watchdogMicroseconds.map { Int64($0) })
    }

    /// Runs until a stop is requested, then releases every lease and closes both connections.
    public func run() {
        for server in ["postgres", "redis"] {
            telemetry.connectionError(server, by: 0)
        }
        while !stop.isStopRequested {
            if watchdog.due(nowMicros: monotonicMicros()) { notifier.notify("WATCHDOG=1") }
            do {
                try connect()
                try pass()
                try cleanUpIfDue()
                try samplePendingIfDue()
                health?.loopWentRound(serversAnswered: true)
                if lastProblem != nil {
                    logger.info("relaying again")
                    lastProblem = nil
                }
                backoff.reset()
            } catch {
                recover(from: error)
            }
        }
        shutdown()
    }

    // MARK: connections

    private func connect() throws {
        if postgres?.isHealthy != true {
            postgres = nil
            let connection = try openPostgres()
            try connection.execute(ConnectionSettings.sessionSQL(timeout: configuration.networkTimeout))
            let queries = configuration.queries
            let resolved = try connection.query(queries.resolveTable)
            guard resolved.count == 1, let schema = resolved.text(0, 0), let name = resolved.text(0, 1) else {
                throw RelayProblem.tableMissing(configuration.table.description)
            }
            resolvedTable = "\(schema).\(name)"
            let identity = try connection.query(OutboxQueries.clusterIdentity)
            cluster = FencedPush.scope(system: identity.text(0, 0) ?? "", database: identity.text(0, 1) ?? "")
            if try connection.query(queries.hasPendingIndex).bool(0, 0) != true {
                logger.warning(
                    "the outbox table has no index on pending rows; fetches will slow down as the backlog grows. Run 'outbox-relay migrate' to add it",
                    metadata: ["outbox.index": "\(queries.pendingIndexName)"])
            }
            postgres = connection
            logger.debug("connected to PostgreSQL", metadata: ["outbox.table": "\(resolvedTable)"])
        }
        if listener?.isHealthy != true {
            listener = nil
            do {
                let connection = try openPostgres()
                try connection.execute("LISTEN \"\(configuration.notifyChannel)\"")
                listener = connection
                lastListenProblem = nil
            } catch {
                // Once per problem: it is tried again every round.
                let message = "cannot LISTEN for wake-ups, polling instead: \(error)"
                message == lastListenProblem ? logger.debug("\(message)") : logger.warning("\(message)")
                lastListenProblem = message
            }
        }
        if redis == nil || redis?.isBroken == true {
            redis = nil
            redis = try FencedRedis(endpoint: configuration.redis, timeout: configuration.networkTimeout, tls: configuration.redisTLS)
            logger.debug("connected to Redis", metadata: ["outbox.redis": "\(configuration.redis)"])
        }
        if !announcedReady {
            announcedReady = true
            notifier.notify("READY=1")
            logger.info(
                "ready",
                metadata: [
                    "outbox.table": "\(resolvedTable)", "outbox.redis": "\(configuration.redis)",
                    "outbox.split_keys": "\(configuration.splitKeys.map { $0.map(\.description).joined(separator: ",") } ?? "(all)")",
                ])
        }
    }

    private func openPostgres() throws(PostgresError) -> PostgresConnection {
        try PostgresConnection(
            connectionString: configuration.databaseURL, settings: ConnectionSettings.postgres(timeout: configuration.networkTimeout),
            password: configuration.databasePassword)
    }

    private func recover(from error: any Error) {
        health?.loopWentRound(serversAnswered: false)
        switch error {
        case let error as PostgresError:
            // Whatever the failure, start over on a fresh connection: leases die with the old one.
            postgres = nil
            telemetry.connectionError("postgres")
            if error.isUndefinedTable { lastProblemOrLog(RelayProblem.tableMissing(configuration.table.description).description); break }
            lastProblemOrLog(error.description)
        case let error as RedisError:
            redis = nil
            telemetry.connectionError("redis")
            lastProblemOrLog(error.description)
        case let problem as RelayProblem where problem.kind == .fenced:
            // Our session lost its leases without noticing; start over on fresh connections.
            postgres = nil
            redis = nil
            lastProblemOrLog(problem.description)
        default:
            lastProblemOrLog("\(error)")
        }
        let delay = backoff.nextDelay(unitRandom: random())
        logger.debug("retrying", metadata: ["outbox.delay_s": "\(String(format: "%.2f", delay))"])
        stop.sleep(seconds: delay)
    }

    /// Logs a problem once at error level; the same problem again only at debug level.
    private func lastProblemOrLog(_ message: String) {
        notifier.notify("STATUS=waiting: \(message.prefix(200))")
        if message == lastProblem {
            logger.debug("\(message)")
        } else {
            logger.error("\(message)")
            lastProblem = message
        }
    }

    private func shutdown() {
        notifier.notify("STOPPING=1")
        if let postgres, postgres.isHealthy {
            _ = try? postgres.query(SQLStatement("SELECT pg_advisory_unlock_all()"))
        }
        postgres = nil
        listener = nil
        redis = nil
        logger.info("stopped")
    }

    // MARK: relaying

    private func pass() throws {
        skipped.expire(nowMicros: monotonicMicros())
        let keys = try keysWithWork()
        var worked = false
        for key in rotation.order(keys) where !stop.isStopRequested {
            if refusedKeys.isWaiting(key, nowMicros: monotonicMicros()) { continue }
            let lease = LeaseRun(
                configuration: configuration, postgres: postgres!, redis: redis!, resolvedTable: resolvedTable, cluster: cluster, logger: logger,
                stop: stop, nowMicros: nowMicros, makeJID: makeJID, telemetry: telemetry)
            let outcome = try lease.run(key, skipped: &skipped, tempos: &tempos)
            relayedTotal += outcome.relayed
            if let reason = outcome.refused {
                refusedFrom(key, reason: reason)
            } else if outcome.handled > 0 {
                worked = true
                if refusedKeys.relayed(key) != nil {
                    logger.info("Redis takes the split key's batches again", metadata: ["outbox.split_key": "\(key)"])
                }
            }
            if watchdog.due(nowMicros: monotonicMicros()) { notifier.notify("WATCHDOG=1") }
        }
        notifier.notify("STATUS=relaying: \(relayedTotal) jobs since start; \(keys.count) split keys with pending rows in the last pass")
        if !worked { try redis!.ping() }
        if !worked && !stop.isStopRequested && !notified() {
            if stop.sleep(seconds: configuration.sleepOnEmpty, watching: listener?.socket) == .readable {
                _ = notified()
            }
        }
    }

    /// Redis refused a batch of `key`: it stays pending, and the key waits (``RefusedKeys``).
    private func refusedFrom(_ key: SplitKey, reason: String) {
        let metadata: Logger.Metadata = ["outbox.split_key": "\(key)"]
        let message = "Redis refused a batch of the split key, which stays pending and is retried with backoff: \(reason)"
        if refusedKeys.refused(key, reason: reason, nowMicros: monotonicMicros()) {
            logger.error("\(message)", metadata: metadata)
        } else {
            logger.debug("\(message)", metadata: metadata)
        }
    }

    /// Deletes rows enqueued longer ago than `--cleanup`, in chunks of 1,000 (at most
    /// `--cleanup-limit` a round), once a minute.
    private func cleanUpIfDue() throws {
        guard let policy = configuration.cleanup else { return }
        if let lastCleanup, monotonicMicros() - lastCleanup < CleanupPolicy.intervalMicros { return }
        lastCleanup = monotonicMicros()
        var deleted = 0
        var last: Int?
        while let chunk = policy.nextChunk(deletedSoFar: deleted, lastChunkDeleted: last), !stop.isStopRequested {
            let rows = try postgres!.query(configuration.queries.cleanup(olderThan: policy.retention.seconds, limit: chunk))
            deleted += rows.count
            last = rows.count
            health?.progressed()
        }
        if deleted > 0 {
            logger.info("cleaned up enqueued rows", metadata: ["outbox.rows": "\(deleted)", "outbox.older_than": "\(policy.retention)"])
        }
    }

    /// Samples the pending rows per key for the metrics, every 15 s, when metrics are served or sent.
    private func samplePendingIfDue() throws {
        guard health != nil || configuration.samplesPending else { return }
        if let lastSample, monotonicMicros() - lastSample < Self.sampleIntervalMicros { return }
        lastSample = monotonicMicros()
        let rows = try postgres!.query(configuration.queries.pendingSummary)
        let sample = (0..<rows.count).map { row in
            (key: SplitKey(rows.text(row, 0)), pending: Double(rows.int64(row, 1) ?? 0), oldestAge: rows.text(row, 2).flatMap(Double.init) ?? 0)
        }
        telemetry.sampledPending(sample, configured: configuration.splitKeys)
    }

    /// The keys that may have pending rows: found by discovery, or the configured keys that do,
    /// each in one indexed query.
    private func keysWithWork() throws -> [SplitKey] {
        if configuration.layout.hasSplitKeys && configuration.splitKeys == nil { return try discoverKeys() }
        let rows = try postgres!.query(configuration.queries.keysWithPendingRows(among: configuration.splitKeys ?? [.null]))
        return (0..<rows.count).map { SplitKey(rows.text($0, 0)) }
    }

    /// Whether wake-ups arrived on the LISTEN connection since the last look.
    private func notified() -> Bool {
        guard let listener else { return false }
        do {
            return try !listener.notifications().isEmpty
        } catch {
            self.listener = nil
            return false
        }
    }

    private func discoverKeys() throws -> [SplitKey] {
        let rows = try postgres!.query(configuration.queries.discoverKeys)
        return (0..<rows.count).map { SplitKey(rows.text($0, 0)) }
    }

    // MARK: defaults

    /// The wall clock (see ``RelayClock``).
    public static func systemMicros() -> Int64 {
        RelayClock.wallMicros()
    }

    /// A Sidekiq jid: 12 random bytes as 24 lowercase hex characters.
    public static func randomJID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<12).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return String(byte, radix: 16).leftPadded(to: 2)
        }.joined()
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
