import ArgumentParser
import Foundation
import OutboxRelay
import OutboxRelayIO

/// A PostgreSQL connection for one-shot commands (migrate, dead-letters, status): one attempt,
/// and on failure one line on standard error and exit status 1.
struct DatabaseSession {
    let connection: PostgresConnection

    init(url: String) throws {
        do {
            connection = try PostgresConnection(connectionString: url, settings: [("application_name", "outbox-relay (command)"), ("connect_timeout", "10")])
        } catch {
            throw CommandFailure(error.message)
        }
    }

    @discardableResult
    func query(_ statement: SQLStatement, binary: Bool = false) throws -> PostgresRows {
        do {
            return try connection.query(statement, binary: binary)
        } catch {
            throw CommandFailure(error.message)
        }
    }

    func execute(_ sql: String) throws {
        do {
            try connection.execute(sql)
        } catch {
            throw CommandFailure(error.message)
        }
    }
}

/// A one-shot command failed: its message is printed on one line and the exit status is 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
