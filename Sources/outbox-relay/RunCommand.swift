import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import OutboxRelay
import OutboxRelayDaemon
import OutboxRelayIO
import ServiceLifecycle

/// `outbox-relay run` (the default): relay until SIGTERM or SIGINT.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Relay pending outbox rows to Sidekiq until stopped (the default command)."
    )

    /// Every flag of `run`, each of which may also come from `OUTBOX_RELAY_<FLAG>`.
    static let environmentFlags = [
        "database-url", "redis-url", "database-password-file", "redis-password-file", "redis-tls-ca",
        "redis-tls-cert", "redis-tls-key", "schema", "table", "message-format", "split-keys", "batch-size", "sleep-on-empty",
        "log-level", "log-format", "redis-namespace", "sidekiq-timestamps", "max-payload-bytes", "max-batch-bytes",
        "notify-channel", "network-timeout", "cleanup", "cleanup-limit", "metrics-listen", "metrics-url",
    ] + RedisReplicationOptions.environmentFlags

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var outbox: OutboxOptions
    /// Sentinel and replica-acknowledged pushes (issue 15).
    @OptionGroup var redisReplication: RedisReplicationOptions

    @Option(help: ArgumentHelp("Split keys to serve, comma-separated; default (or empty): every key with pending rows.", valueName: "a,b,c"))
    var splitKeys: String?

    @Option(help: "Most rows fetched, pushed and marked per batch (1 to 10000).")
    var batchSize: Int = 100

    @Option(help: ArgumentHelp("Seconds to sleep when nothing is pending.", valueName: "seconds"))
    var sleepOnEmpty: Double = 0.5

    @Option(help: ArgumentHelp("Log level: fatal, error, warn, info or debug.", valueName: "level"))
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("Delete rows enqueued longer ago than this ISO-8601 duration (e.g. P7D), or none.", valueName: "duration"))
    var cleanup: String = "none"

    @Option(help: ArgumentHelp("Most rows deleted per cleanup round (once a minute): a number, or all.", valueName: "N"))
    var cleanupLimit: String = "all"

    @Option(help: ArgumentHelp("Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT; off unless given.", valueName: "host:port"))
    var metricsListen: String?

    @Option(help: ArgumentHelp("Send res_outbox's InfluxDB points to http(s)://[user:password@]host:port/database or udp://host:port.", valueName: "url"))
    var metricsURL: String?

    @Flag(name: [.customLong("lock"), .customShort("l")], inversion: .prefixedNo, help: "Accepted for res_outbox's unit files; leases are always taken.")
    var lock = true

    @Option(help: ArgumentHelp("Log lines as text (key=value) or json (one object per line).", valueName: "format"))
    var logFormat: LineLogHandler.Format = .text

    @Option(help: ArgumentHelp("redis-namespace prefix for Sidekiq <= 6.5 (keys become NS:queue:<q>).", valueName: "NS"))
    var redisNamespace: String?

    @Option(help: ArgumentHelp("How to write enqueued_at and created_at: float (Sidekiq 6, 7, 8) or millis (Sidekiq 8 only).", valueName: "style"))
    var sidekiqTimestamps: TimestampStyle = .float

    @Option(help: ArgumentHelp("Largest payload relayed; larger rows are dead-lettered.", valueName: "bytes"))
    var maxPayloadBytes: Int = 10 * 1024 * 1024

    @Option(help: ArgumentHelp("Most payload bytes fetched in one batch (the first row always comes).", valueName: "bytes"))
    var maxBatchBytes: Int = 16 * 1024 * 1024

    @Option(help: ArgumentHelp("Channel to LISTEN on for wake-ups from 'migrate --notify'.", valueName: "name"))
    var notifyChannel: String = "outbox_relay"

    @Option(help: ArgumentHelp("Seconds any call to PostgreSQL or Redis may take before the connection counts as lost.", valueName: "seconds"))
    var networkTimeout: Double = 10

    func validate() throws {
        guard RelayConfiguration.batchSizeRange.contains(batchSize) else {
            throw ValidationError("--batch-size must be from 1 to 10000, got \(batchSize)")
        }
        guard sleepOnEmpty >= 0, sleepOnEmpty <= 3600 else {
            throw ValidationError("--sleep-on-empty must be from 0 to 3600 seconds, got \(sleepOnEmpty)")
        }
        guard LogLevelName.parse(logLevel) != nil else {
            throw ValidationError("--log-level must be fatal, error, warn, info or debug, got '\(logLevel)'")
        }
        if let misspelled = Self.unknownVariables().first(where: \.isMisspelledFlag) {
            throw ValidationError("\(misspelled.name) names no flag; did you mean \(misspelled.suggestion)?")
        }
        if splitKeys.flatMap(SplitKeyList.parse) != nil && !outbox.schema.hasSplitKeys {
            throw ValidationError("--split-keys: the \(outbox.schema.rawValue) layout has no split key column")
        }
        if let redisNamespace, redisNamespace.isEmpty || redisNamespace.contains(where: \.isWhitespace) {
            throw ValidationError("--redis-namespace must be a non-empty word, got '\(redisNamespace)'")
        }
        _ = try cleanupPolicy()
        guard networkTimeout >= 0.1, networkTimeout <= 600 else {
            throw ValidationError("--network-timeout must be from 0.1 to 600 seconds, got \(networkTimeout)")
        }
        guard TableName.isIdentifier(notifyChannel) else {
            throw ValidationError("--notify-channel must be a plain identifier (letters, digits, _), got '\(notifyChannel)'")
        }
        guard maxBatchBytes >= 1024 else {
            throw ValidationError("--max-batch-bytes must be at least 1024, got \(maxBatchBytes)")
        }
        guard maxPayloadBytes >= 64 else {
            throw ValidationError("--max-payload-bytes must be at least 64, got \(maxPayloadBytes)")
        }
        _ = try connection.resolved()
        _ = try influxURL()
        if let metricsListen { try Self.validateListen(metricsListen) }
    }

    /// `--metrics-listen` as `HOST:PORT` (`[IPv6]:PORT` too), port 1 to 65535.
    static func validateListen(_ listen: String) throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port),
            !listen[..<colon].isEmpty
        else {
            throw ValidationError("--metrics-listen must be HOST:PORT (for example 127.0.0.1:9187 or [::1]:9187), got '\(listen)'")
        }
    }

    func run() async throws {
        OtherSignals.ignore()
        MallocTuning.keepFreedMemoryForReuse()
        let connection = try connection.resolved()
        var configuration = RelayConfiguration(
            databaseURL: connection.databaseURL, redis: connection.redis, layout: outbox.schema, table: try outbox.tableName(),
            messageFormat: outbox.messageFormat, splitKeys: splitKeys.flatMap(SplitKeyList.parse), batchSize: batchSize,
            sleepOnEmpty: sleepOnEmpty,
            sidekiq: SidekiqJobEncoder(timestamps: sidekiqTimestamps, maximumPayloadBytes: maxPayloadBytes),
            keys: SidekiqKeys(namespace: redisNamespace), networkTimeout: networkTimeout, maxBatchBytes: maxBatchBytes,
            notifyChannel: notifyChannel)
        configuration.cleanup = try cleanupPolicy()
        configuration.databasePassword = connection.databasePassword
        configuration.redisTLS = connection.redisTLS
        let influx = try influxURL()
        configuration.samplesPending = influx != nil
        configuration.withAdvisoryLockPrefix = ProcessInfo.processInfo.environment["WITH_ADVISORY_LOCK_PREFIX"]
        configuration.redisReplication = try redisReplication.resolved(redis: connection.redis)
        let redactor = connection.redactor.adding([influx?.password, configuration.redisReplication.sentinelPassword].compactMap { $0 })
        let level = LogLevelName.parse(logLevel)!
        let format = logFormat
        let logger = Logger(label: "outbox-relay") { _ in LineLogHandler(level: level, format: format, redactor: redactor) }
        switch FileLimit.check(metrics: metricsListen != nil) {
        case .tooLow(let line):
            logger.critical("\(line)")
            throw ExitCode(71)
        case .tight(let line):
            logger.warning("\(line)")
        case .enough:
            break
        }
        for unknown in Self.unknownVariables() {
            logger.notice("ignoring \(unknown.name): it names no flag of run (closest: \(unknown.suggestion))")
        }
        if !lock {
            logger.info("--no-lock is accepted for res_outbox's unit files, but outbox-relay always leases each split key")
        }
        var factories: [any MetricsFactory] = []
        let reporter = influx.map { InfluxReporter(url: $0, logger: logger) }
        if let reporter {
            factories.append(InfluxMetricsFactory(reporter: reporter, format: outbox.messageFormat))
            reporter.start()
            logger.info("sending metrics to InfluxDB", metadata: ["outbox.metrics_url": "\(reporter.url)"])
        }
        defer { reporter?.stop() }
        var health: RelayHealth?
        if let metricsListen {
            let registry = PrometheusCollectorRegistry()
            factories.append(DescribedPrometheusFactory(registry: registry))
            let relayHealth = RelayHealth(stallSeconds: max(30, 3 * networkTimeout))
            let server: MetricsServer
            do {
                server = try MetricsServer(listen: metricsListen, health: relayHealth, logger: logger) { registry.emitToBuffer() }
            } catch {
                throw CommandFailure("\(error)")
            }
            server.start()
            logger.info("serving metrics", metadata: ["outbox.metrics_listen": "\(metricsListen)"])
            health = relayHealth
        }
        if factories.count == 1 {
            MetricsSystem.bootstrap(factories[0])
        } else if factories.count > 1 {
            MetricsSystem.bootstrap(MultiplexMetricsHandler(factories: factories))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: RelayService(configuration: configuration, logger: logger, health: health)),
                    .init(service: OtherSignals(logger: logger), successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "outbox-relay.lifecycle") { _ in LineLogHandler(level: .warning, format: format, redactor: redactor) }
            ))
        try await group.run()
    }

    private func influxURL() throws -> InfluxURL? {
        // Empty, as an environment file may leave it, means off (as no flag does for res_outbox).
        guard let metricsURL, !metricsURL.isEmpty else { return nil }
        do {
            return try InfluxURL(metricsURL)
        } catch {
            throw ValidationError("--metrics-url: \(error.message)")
        }
    }

    private func cleanupPolicy() throws -> CleanupPolicy? {
        guard cleanup != "none" else { return nil }
        let retention: ISODuration
        do {
            retention = try ISODuration(cleanup)
        } catch {
            throw ValidationError("--cleanup: \(error.message), or none")
        }
        guard outbox.schema == .res else {
            throw ValidationError("--cleanup: the reliable_job layout's rows are deleted by the gem's middleware")
        }
        // PostgreSQL's timestamps end in 294276 AD; a retention beyond a millennium is a typo.
        guard retention.seconds <= 1000 * 366 * 86_400 else {
            throw ValidationError("--cleanup: '\(cleanup)' is longer than 1000 years, or none")
        }
        if cleanupLimit == "all" { return CleanupPolicy(retention: retention, limit: nil) }
        guard let limit = Int(cleanupLimit), limit > 0 else {
            throw ValidationError("--cleanup-limit must be a positive number or all, got '\(cleanupLimit)'")
        }
        return CleanupPolicy(retention: retention, limit: limit)
    }

    /// The `OUTBOX_RELAY_*` variables of this process that stand for no flag.
    static func unknownVariables() -> [UnknownVariable] {
        EnvironmentArguments(flags: environmentFlags).unknownVariables(in: ProcessInfo.processInfo.environment)
    }
}

/// res_outbox's level names mapped onto swift-log's.
enum LogLevelName {
    static func parse(_ name: String) -> Logger.Level? {
        switch name.lowercased() {
        case "fatal": .critical
        case "error": .error
        case "warn", "warning": .warning
        case "info": .info
        case "debug": .debug
        default: nil
        }
    }
}

extension LineLogHandler.Format: ExpressibleByArgument {}
