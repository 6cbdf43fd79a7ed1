import ArgumentParser
import OutboxRelay

/// `outbox-relay migrate`: create the outbox table, its indexes and the dead-letter table.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create the outbox table (when missing), its indexes and the dead-letter table; idempotent."
    )

    @OptionGroup var outbox: OutboxOptions

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "Print the SQL instead of running it, for apps that run their own migrations.")
    var print = false

    @Flag(help: "Also install the trigger that NOTIFYs waiting relays of new rows, for millisecond latency.")
    var notify = false

    @Option(help: ArgumentHelp("Channel the trigger notifies (the relay's --notify-channel).", valueName: "name"))
    var notifyChannel: String = "outbox_relay"

    func validate() throws {
        guard TableName.isIdentifier(notifyChannel) else {
            throw ValidationError("--notify-channel must be a plain identifier (letters, digits, _), got '\(notifyChannel)'")
        }
    }

    func run() async throws {
        let queries = try outbox.queries()
        let statements = queries.createStatements + (notify ? queries.notifyStatements(channel: notifyChannel) : [])
        if print {
            Swift.print(statements.map { $0 + ";" }.joined(separator: "\n"))
            return
        }
        let session = try database.session()
        for statement in statements {
            try session.execute(statement)
        }
        let trigger = notify ? ", and the NOTIFY trigger on channel \(notifyChannel)" : ""
        Swift.print("migrated: \(try outbox.tableName()) (\(outbox.schema.rawValue) layout), its indexes, and \(queries.deadLetterTable)\(trigger)")
    }
}
