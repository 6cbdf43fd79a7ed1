import Foundation
import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// The relay's main loop. It runs on one dedicated thread, because libpq and the Redis socket
/// block: connect (with backoff), then pass after pass over the split keys, leasing each in turn,
/// relaying its pending rows in batches (fetch, push, then mark) and releasing it. It only wires
/// together the parts that each do one job: ``RelayConnections``, ``PassScheduler`` (whose
/// leases ``LeaseRun`` drives through the ``LeaseMachine``), ``CleanupRounds``,
/// ``PendingSampler``, ``RelayTelemetry`` (health and metrics) and ``ProblemLog``.
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

    private let connections: RelayConnections
    private let leaseSettings: LeaseRun.Settings
    private var scheduler: PassScheduler
    private var cleanup: CleanupRounds
    private var sampler: PendingSampler
    private var problems: ProblemLog
    private var backoff = Backoff()
    private var announcedReady = false
    private var watchdog: WatchdogTimer
    /// Jobs relayed since start, for systemd's STATUS line.
    private var relayedTotal = 0

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
        connections = RelayConnections(
            settings: .init(
                databaseURL: configuration.databaseURL, databasePassword: configuration.databasePassword,
                networkTimeout: configuration.networkTimeout, queries: configuration.queries, table: configuration.table,
                notifyChannel: configuration.notifyChannel, redis: configuration.redis, redisTLS: configuration.redisTLS,
                redisReplication: configuration.redisReplication),
            logger: logger)
        scheduler = PassScheduler(
            settings: .init(
                queries: configuration.queries, splitKeys: configuration.splitKeys, hasSplitKeys: configuration.layout.hasSplitKeys,
                groupSize: configuration.layout == .res && configuration.reliableJobGemLock == nil ? RelayLoop.groupSize : 1),
            logger: logger, rotationStart: Int(getpid()))
        leaseSettings = LeaseRun.Settings(configuration)
        cleanup = CleanupRounds(policy: configuration.cleanup, queries: configuration.queries, logger: logger)
        sampler = PendingSampler(queries: configuration.queries)
        problems = ProblemLog(logger: logger, notifier: notifier)
    }

    /// Runs until a stop is requested, then releases every lease and closes both connections.
    public func run() {
        for server in ["postgres", "redis"] {
            telemetry.connectionError(server, by: 0)
        }
        while !stop.isStopRequested {
            pingWatchdogIfDue()
            do {
                try connections.ensure()
                announceReady()
                try pass()
                try cleanup.runIfDue(
                    postgres: connections.postgres!, nowMicros: monotonicMicros(), isStopRequested: { stop.isStopRequested },
                    chunkDeleted: { health?.progressed() })
                if health != nil || configuration.samplesPending,
                    let sample = try sampler.sampleIfDue(postgres: connections.postgres!, nowMicros: monotonicMicros())
                {
                    telemetry.sampledPending(sample, configured: configuration.splitKeys)
                }
                health?.loopWentRound(serversAnswered: true)
                problems.recovered()
                backoff.reset()
            } catch {
                recover(from: error)
            }
        }
        notifier.notify("STOPPING=1")
        connections.close()
        logger.info("stopped")
    }

    private func pingWatchdogIfDue() {
        if watchdog.due(nowMicros: monotonicMicros()) { notifier.notify("WATCHDOG=1") }
    }

    private func announceReady() {
        guard !announcedReady else { return }
        announcedReady = true
        notifier.notify("READY=1")
        logger.info(
            "ready",
            metadata: [
                "outbox.table": "\(connections.resolvedTable)", "outbox.redis": "\(configuration.redis)",
                "outbox.split_keys": "\(configuration.splitKeys.map { $0.map(\.description).joined(separator: ",") } ?? "(all)")",
            ])
    }

    private func recover(from error: any Error) {
        health?.loopWentRound(serversAnswered: false)
        switch error {
        case let error as PostgresError:
            // Whatever the failure, start over on a fresh connection: leases die with the old one.
            connections.dropPostgres()
            telemetry.connectionError("postgres")
            problems.report(error.isUndefinedTable ? RelayProblem.tableMissing(configuration.table.description).description : error.description)
        case let error as RedisError:
            connections.dropRedis()
            telemetry.connectionError("redis")
            problems.report(error.description)
        case let problem as RelayProblem where problem.kind == .fenced:
            // Our session lost its leases without noticing; start over on fresh connections.
            connections.dropPostgres()
            connections.dropRedis()
            problems.report(problem.description)
        default:
            problems.report("\(error)")
        }
        let delay = backoff.nextDelay(unitRandom: random())
        logger.debug("retrying", metadata: ["outbox.delay_s": "\(String(format: "%.2f", delay))"])
        stop.sleep(seconds: delay)
    }

    // MARK: relaying

    private func pass() throws {
        let postgres = connections.postgres!
        let redis = connections.redis!
        let lease = LeaseRun(
            configuration: leaseSettings, postgres: postgres, reader: connections.reader ?? postgres, redis: redis, resolvedTable: connections.resolvedTable,
            cluster: connections.cluster, logger: logger, stop: stop, nowMicros: nowMicros, makeJID: makeJID, telemetry: telemetry,
            waitForNotification: connections.listenSocket == nil ? nil : waitForNotification)
        let outcome = try scheduler.pass(
            postgres: postgres, nowMicros: monotonicMicros(), isStopRequested: { stop.isStopRequested },
            lease: { key, skipped, tempos in try lease.run(key, skipped: &skipped, tempos: &tempos) },
            leaseGroup: { keys, skipped, tempos in
                try lease.runGroups(keys, groupSize: RelayLoop.groupSize, skipped: &skipped, tempos: &tempos)
            },
            between: pingWatchdogIfDue)
        relayedTotal += outcome.relayed
        notifier.notify("STATUS=relaying: \(relayedTotal) jobs since start; \(outcome.keysWithWork) split keys with pending rows in the last pass")
        if !outcome.worked { try redis.ping() }
        if !outcome.worked && !stop.isStopRequested && !connections.notified() {
            if stop.sleep(seconds: configuration.sleepOnEmpty, watching: connections.listenSocket) == .readable {
                _ = connections.notified()
            }
        }
    }

    /// A lingering lease's wait: whether wake-ups arrived within `seconds`, all of which may be
    /// for `key`. One for another key ends the wait unnotified, so that the lease is released and
    /// the pass goes on to that key; so does a stop.
    private func waitForNotification(seconds: Double, key: SplitKey) -> Bool {
        if let pending = connections.wakeUps(for: key) { return pending }
        guard let socket = connections.listenSocket, stop.sleep(seconds: seconds, watching: socket) == .readable else { return false }
        return connections.wakeUps(for: key) == true
    }

    // MARK: defaults

    /// The most split keys leased together. Each holds an advisory lock until the group ends, and
    /// PostgreSQL's shared lock table has room for max_locks_per_transaction (64) times
    /// max_connections (100) by default, shared by every session.
    public static let groupSize = 128

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
