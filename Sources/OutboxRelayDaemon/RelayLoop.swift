import Foundation
import Logging
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
    private let nowMicros: () -> Int64
    private let makeJID: () -> String
    private let random: () -> Double

    private var postgres: PostgresConnection?
    private var redis: RedisConnection?
    private var resolvedTable = ""
    /// Rows that could not be relayed nor dead-lettered, per key; forgotten every few minutes so
    /// they are tried again (for example once the dead-letter table exists).
    private var skipped: [SplitKey: Set<Int64>] = [:]
    private var skippedSince: Int64 = 0
    private static let skipMemoryMicros: Int64 = 300_000_000
    private var rotation = KeyRotation(start: Int(getpid()))
    private var backoff = Backoff()
    private var announcedReady = false
    private var lastProblem: String?

    public init(
        configuration: RelayConfiguration, logger: Logger, stop: StopSignal, notifier: SystemdNotifier = SystemdNotifier(),
        nowMicros: @escaping () -> Int64 = RelayLoop.systemMicros, makeJID: @escaping () -> String = RelayLoop.randomJID,
        random: @escaping () -> Double = { Double.random(in: 0...1) }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.stop = stop
        self.notifier = notifier
        self.nowMicros = nowMicros
        self.makeJID = makeJID
        self.random = random
    }

    /// Runs until a stop is requested, then releases every lease and closes both connections.
    public func run() {
        while !stop.isStopRequested {
            do {
                try connect()
                try pass()
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
            let connection = try PostgresConnection(
                connectionString: configuration.databaseURL, settings: ConnectionSettings.postgres(timeout: configuration.networkTimeout))
            try connection.execute(ConnectionSettings.sessionSQL(timeout: configuration.networkTimeout))
            let queries = configuration.queries
            let resolved = try connection.query(queries.resolveTable)
            guard resolved.count == 1, let schema = resolved.text(0, 0), let name = resolved.text(0, 1) else {
                throw RelayProblem.tableMissing(configuration.table.description)
            }
            resolvedTable = "\(schema).\(name)"
            if try connection.query(queries.hasPendingIndex).bool(0, 0) != true {
                logger.warning(
                    "the outbox table has no index on pending rows; fetches will slow down as the backlog grows. Run 'outbox-relay migrate' to add it",
                    metadata: ["outbox.index": "\(queries.pendingIndexName)"])
            }
            postgres = connection
            logger.debug("connected to PostgreSQL", metadata: ["outbox.table": "\(resolvedTable)"])
        }
        if redis == nil || redis?.isBroken == true {
            redis = nil
            redis = try RedisConnection(endpoint: configuration.redis, timeout: configuration.networkTimeout)
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

    private func recover(from error: any Error) {
        switch error {
        case let error as PostgresError:
            // Whatever the failure, start over on a fresh connection: leases die with the old one.
            postgres = nil
            if error.isUndefinedTable { lastProblemOrLog(RelayProblem.tableMissing(configuration.table.description).description); break }
            lastProblemOrLog(error.description)
        case let error as RedisError:
            redis = nil
            lastProblemOrLog(error.description)
        default:
            lastProblemOrLog("\(error)")
        }
        let delay = backoff.nextDelay(unitRandom: random())
        logger.debug("retrying", metadata: ["outbox.delay_s": "\(String(format: "%.2f", delay))"])
        stop.sleep(seconds: delay)
    }

    /// Logs a problem once at error level; the same problem again only at debug level.
    private func lastProblemOrLog(_ message: String) {
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
        redis = nil
        logger.info("stopped")
    }

    // MARK: relaying

    private func pass() throws {
        if nowMicros() - skippedSince > Self.skipMemoryMicros {
            skipped = [:]
            skippedSince = nowMicros()
        }
        let keys = configuration.layout.hasSplitKeys ? try configuration.splitKeys ?? discoverKeys() : [.null]
        var worked = false
        for key in rotation.order(keys) where !stop.isStopRequested {
            if try serve(key) > 0 { worked = true }
        }
        if !worked && !stop.isStopRequested {
            stop.sleep(seconds: configuration.sleepOnEmpty)
        }
    }

    private func discoverKeys() throws -> [SplitKey] {
        let rows = try postgres!.query(configuration.queries.discoverKeys)
        return (0..<rows.count).map { SplitKey(rows.text($0, 0)) }
    }

    /// Leases `key` and relays its pending rows; returns how many rows it handled.
    private func serve(_ key: SplitKey) throws -> Int {
        let postgres = postgres!
        let queries = configuration.queries
        let lease = LeaseKey(table: resolvedTable, format: queries.leaseFormat, splitKey: key)
        guard try postgres.query(queries.tryLease(lease)).bool(0, 0) == true else {
            logger.debug("split key leased by another instance", metadata: ["outbox.split_key": "\(key)"])
            return 0
        }
        defer {
            if postgres.isHealthy { _ = try? postgres.query(queries.releaseLease(lease)) }
        }
        let started = nowMicros()
        var tempo = LeaseTempo(maximumBatches: configuration.batchesPerLease)
        var relayed = 0
        var handled = 0
        while !stop.isStopRequested {
            let skipping = skipped[key].map { $0.sorted() } ?? []
            let result = try postgres.query(queries.fetch(key, limit: configuration.batchSize, skipping: skipping), binary: true)
            let rows = (0..<result.count).map {
                OutboxRow(id: result.int64($0, 0)!, payload: result.bytes($0, 1)!, createdAtMicros: result.int64($0, 2)!, jid: result.text($0, 3))
            }
            if rows.isEmpty { break }
            let plan = BatchPlan(
                rows: rows, encoder: configuration.sidekiq, keys: configuration.keys, nowMicros: nowMicros(), makeJID: makeJID)
            if !plan.pushCommands.isEmpty { try push(plan.pushCommands) }
            if !plan.markIDs.isEmpty { try postgres.query(queries.markEnqueued(plan.markIDs, scheduled: plan.scheduledIDs)) }
            if !plan.rejections.isEmpty { try deadLetter(plan.rejections, key: key, on: postgres) }
            relayed += plan.markIDs.count
            handled += rows.count
            logger.debug(
                "batch relayed",
                metadata: ["outbox.split_key": "\(key)", "outbox.jobs": "\(plan.markIDs.count)", "outbox.rejected": "\(plan.rejections.count)"])
            if tempo.afterBatch(fetched: rows.count, limit: configuration.batchSize) == .release { break }
        }
        if relayed > 0 {
            logger.info(
                "relayed jobs",
                metadata: [
                    "outbox.split_key": "\(key)", "outbox.jobs": "\(relayed)", "outbox.batches": "\(tempo.batches)",
                    "outbox.duration_ms": "\((nowMicros() - started) / 1000)",
                ])
        }
        return handled
    }

    /// Moves rows that cannot be relayed into the dead-letter table. When that fails (most often
    /// because the table was never created), the rows stay pending and this process skips them.
    private func deadLetter(_ rejections: [BatchPlan.Rejection], key: SplitKey, on postgres: PostgresConnection) throws {
        let statement = configuration.queries.deadLetter(rejections.map { ($0.id, $0.reason) })
        do {
            try postgres.query(statement)
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
            for rejection in rejections where skipped[key, default: []].insert(rejection.id).inserted {
                logger.error(
                    "row cannot be relayed: \(rejection.reason); it stays pending and is skipped because \(why)",
                    metadata: ["outbox.split_key": "\(key)", "outbox.row_id": "\(rejection.id)"])
            }
        }
    }

    private func push(_ commands: [RedisCommand]) throws {
        let replies = try redis!.send(commands)
        if let failure = replies.first(where: { if case .error = $0 { true } else { false } }), case .error(let message) = failure {
            throw RelayProblem.pushRefused(message)
        }
        guard case .array(let results) = replies.last else {
            throw RelayProblem.pushRefused("the transaction was not executed")
        }
        for case .error(let message) in results {
            throw RelayProblem.pushRefused(message)
        }
    }

    // MARK: defaults

    public static func systemMicros() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
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
