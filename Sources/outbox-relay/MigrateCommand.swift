import ArgumentParser
import OutboxRelay

/// `outbox-relay migrate`: create the outbox table, its indexes and the dead-letter table.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create the outbox table (when missing), its indexes and the dead-letter table; idempotent."
    )

    @OptionGroup var outbox: OutboxOptions

    @Option(help: ArgumentHelp("libpq connection string or postgresql:// URL (default: $DATABASE_URL).", valueName: "url"))
    var databaseURL: String?

    @Flag(help: "Print the SQL instead of running it, for apps that run their own migrations.")
    var print = false

    func run() async throws {
        let statements = try outbox.queries().createStatements
        if print {
            Swift.print(statements.map { $0 + ";" }.joined(separator: "\n"))
            return
        }
        let url = try ConnectionOptions.databaseURL(databaseURL)
        let session = try DatabaseSession(url: url)
        for statement in statements {
            try session.execute(statement)
        }
        Swift.print("migrated: \(try outbox.tableName()) (\(outbox.schema.rawValue) layout), its indexes, and \(try outbox.queries().deadLetterTable)")
    }
}
