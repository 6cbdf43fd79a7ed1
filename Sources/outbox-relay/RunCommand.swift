import ArgumentParser
import Foundation
import Logging
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

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("Split keys to serve, comma-separated; default: every key with pending rows.", valueName: "a,b,c"))
    var splitKeys: String?

    @Option(help: "Most rows fetched, pushed and marked per batch (1 to 10000).")
    var batchSize: Int = 100

    @Option(help: ArgumentHelp("Seconds to sleep when nothing is pending.", valueName: "seconds"))
    var sleepOnEmpty: Double = 0.5

    @Option(help: ArgumentHelp("Log level: fatal, error, warn, info or debug.", valueName: "level"))
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("The outbox table, optionally schema-qualified.", valueName: "name"))
    var table: String = "event_store_outbox"

    @Option(help: ArgumentHelp("Outbox row format to relay; only sidekiq5 exists.", valueName: "format"))
    var messageFormat: String = "sidekiq5"

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
        guard messageFormat == "sidekiq5" else {
            throw ValidationError("--message-format must be sidekiq5, got '\(messageFormat)'")
        }
        do {
            _ = try TableName(table)
        } catch {
            throw ValidationError("--table: \(error.message)")
        }
        if let splitKeys, parsedSplitKeys(splitKeys).isEmpty {
            throw ValidationError("--split-keys names no key")
        }
        _ = try connection.resolved()
    }

    func run() async throws {
        let connection = try connection.resolved()
        let configuration = RelayConfiguration(
            databaseURL: connection.databaseURL, redis: connection.redis, table: try TableName(table),
            messageFormat: messageFormat, splitKeys: splitKeys.map(parsedSplitKeys), batchSize: batchSize,
            sleepOnEmpty: sleepOnEmpty)
        let redactor = connection.redactor
        let level = LogLevelName.parse(logLevel)!
        let logger = Logger(label: "outbox-relay") { _ in LineLogHandler(level: level, redactor: redactor) }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: RelayService(configuration: configuration, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "outbox-relay.lifecycle") { _ in LineLogHandler(level: .warning, redactor: redactor) }
            ))
        try await group.run()
    }

    private func parsedSplitKeys(_ text: String) -> [SplitKey] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map(SplitKey.named)
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
