import ArgumentParser
import OutboxRelay

extension OutboxLayout: ExpressibleByArgument {}

/// Which outbox table to use; shared by every subcommand.
struct OutboxOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Table layout: res (ruby_event_store-outbox) or reliable_job (sidekiq-reliable_job).", valueName: "layout"))
    var schema: OutboxLayout = .res

    @Option(help: ArgumentHelp("The outbox table, optionally schema.table (default: event_store_outbox, or reliable_job_outbox).", valueName: "name"))
    var table: String?

    @Option(help: ArgumentHelp("Row format to relay (res layout); only sidekiq5 exists.", valueName: "format"))
    var messageFormat: String = "sidekiq5"

    func validate() throws {
        _ = try tableName()
        guard messageFormat == "sidekiq5" else {
            throw ValidationError("--message-format must be sidekiq5, got '\(messageFormat)'")
        }
    }

    func tableName() throws -> TableName {
        do {
            return try TableName(table ?? schema.defaultTable)
        } catch {
            throw ValidationError("--table: \(error.message)")
        }
    }

    func queries() throws -> OutboxQueries {
        OutboxQueries(layout: schema, table: try tableName(), format: messageFormat)
    }
}

extension TimestampStyle: ExpressibleByArgument {}
