import ArgumentParser
import Foundation
import OutboxRelay

/// `outbox-relay migrate`: create the outbox table, its indexes and the dead-letter table. An
/// index equivalent to an existing one (the gem's, under its own name) is not added again, and on
/// a table with rows new indexes are built concurrently (``MigrationPlan``).
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create the outbox table (when missing), its indexes, the dead-letter table and outbox_relay_enqueue(); idempotent."
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
        let extra = [queries.enqueueFunctionStatement] + (notify ? queries.notifyStatements(channel: notifyChannel) : [])
        let url = database.databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"]
        if print && (url ?? "").isEmpty {
            // No database to look at: the script for a new table.
            Swift.print((queries.createStatements + extra).map { $0 + ";" }.joined(separator: "\n"))
            return
        }
        let session = try database.session()
        let plan = MigrationPlan(queries: queries, state: try Self.state(of: queries, in: session))
        let statements = plan.statements + extra
        let reused = plan.reused.map { "the existing index \($0.name) serves (\($0.columns.joined(separator: ", ")))" }
        if print {
            var lines = reused.map { "-- \($0)" }
            if plan.concurrently {
                lines.append(
                    "-- The table has rows, so new indexes are built CONCURRENTLY, which cannot run inside a transaction block: run these statements outside one (in a Rails migration, disable_ddl_transaction!).")
            }
            Swift.print((lines + statements.map { $0 + ";" }).joined(separator: "\n"))
            return
        }
        for line in reused { Swift.print(line) }
        for statement in statements {
            try session.execute(statement)
        }
        let trigger = notify ? ", and the NOTIFY trigger on channel \(notifyChannel)" : ""
        Swift.print("migrated: \(try outbox.tableName()) (\(outbox.schema.rawValue) layout), its indexes, and \(queries.deadLetterTable)\(trigger)")
    }

    /// Whether the table exists and has rows, and its indexes.
    static func state(of queries: OutboxQueries, in session: DatabaseSession) throws -> MigrationPlan.State {
        guard try session.query(queries.tableExists).bool(0, 0) == true else { return MigrationPlan.State(tableExists: false, hasRows: false, indexes: []) }
        let rows = try session.query(queries.existingIndexes)
        let indexes = (0..<rows.count).map { row in
            ExistingIndex(
                name: rows.text(row, 0) ?? "", columns: (rows.text(row, 5) ?? "").split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init),
                predicate: rows.text(row, 4), unique: rows.bool(row, 1) == true, valid: rows.bool(row, 2) == true, method: rows.text(row, 3) ?? "")
        }
        return MigrationPlan.State(tableExists: true, hasRows: try session.query(queries.tableHasRows).bool(0, 0) == true, indexes: indexes)
    }
}
