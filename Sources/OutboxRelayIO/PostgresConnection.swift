internal import CLibPQ
import Foundation
import OutboxRelay

/// One blocking libpq connection. It owns its `PGconn` and frees it in `deinit`; results are copied
/// into Swift values before the `PGresult` is cleared, so nothing above this type sees a pointer.
/// Not thread-safe: one owner (the relay's worker thread) uses it at a time.
public final class PostgresConnection {
    private let connection: OpaquePointer
    private var prepared: Set<String> = []
    private let redactor: SecretRedactor

    /// Connects with `connectionString` (a libpq `key=value` string or a `postgresql://` URL).
    /// `settings` are libpq keywords (for example `application_name`, `connect_timeout`) used as
    /// defaults: the connection string overrides them. `password`, when given (from a password
    /// file), overrides the connection string's.
    public init(connectionString: String, settings: [(String, String)] = [], password: String? = nil) throws(PostgresError) {
        let redactor = SecretRedactor(connectionString: connectionString).adding([password].compactMap { $0 })
        self.redactor = redactor
        let overrides = password.map { [("password", $0)] } ?? []
        let keywords = settings.map(\.0) + ["dbname"] + overrides.map(\.0)
        let values = settings.map(\.1) + [connectionString] + overrides.map(\.1)
        let handle = withCStrings(keywords) { keywordPointers in
            withCStrings(values) { valuePointers in
                PQconnectdbParams(keywordPointers, valuePointers, 1)
            }
        }
        guard let handle else { throw PostgresError(.connectionFailed, "libpq could not allocate a connection") }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = redactor.redact(Self.trimmed(PQerrorMessage(handle)))
            PQfinish(handle)
            throw PostgresError(.connectionFailed, "cannot connect to PostgreSQL: \(message)")
        }
        // Notices ("relation already exists, skipping") are not for the relay's output.
        PQsetNoticeReceiver(handle, { _, _ in }, nil)
        self.connection = handle
    }

    deinit {
        PQfinish(connection)
    }

    /// Checks that libpq accepts `connectionString`: its syntax and its option values (such as
    /// `sslmode`), without waiting for a server. The error never repeats a password.
    public static func validate(connectionString: String) throws(PostgresError) {
        let redactor = SecretRedactor(connectionString: connectionString)
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            let detail = errorMessage.map { trimmed($0) } ?? "out of memory"
            PQfreemem(errorMessage)
            throw PostgresError(.invalidConnectionString, "invalid database URL: \(redactor.redact(detail))")
        }
        PQconninfoFree(options)
        // Option values are checked when a connection starts; start one and drop it at once.
        let probe = withCStrings(["dbname"]) { keywords in
            withCStrings([connectionString]) { values in PQconnectStartParams(keywords, values, 1) }
        }
        defer { PQfinish(probe) }
        if let probe, PQstatus(probe) == CONNECTION_BAD {
            let detail = trimmed(PQerrorMessage(probe))
            if detail.hasPrefix("invalid") || detail.contains("is not supported") {
                throw PostgresError(.invalidConnectionString, "invalid database URL: \(redactor.redact(detail))")
            }
        }
    }

    /// The password in `connectionString`, if it has one, so callers can keep it out of output.
    static func password(in connectionString: String) -> String? {
        guard let options = PQconninfoParse(connectionString, nil) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val {
                return String(cString: value)
            }
            option += 1
        }
        return nil
    }

    /// Whether the connection is still up, as far as libpq knows without a round trip.
    public var isHealthy: Bool { PQstatus(connection) == CONNECTION_OK }

    /// The server's process id for this connection, as `pg_stat_activity.pid` shows it.
    public var backendPID: Int32 { PQbackendPID(connection) }

    /// The connection's socket, to wait on for notifications.
    public var socket: Int32 { PQsocket(connection) }

    /// Reads whatever arrived on the socket and returns the notifications (LISTEN) received,
    /// as `(channel, payload)`; throws when the connection broke.
    public func notifications() throws(PostgresError) -> [(channel: String, payload: String)] {
        guard PQconsumeInput(connection) == 1 else {
            throw PostgresError(.connectionLost, "PostgreSQL: \(redactor.redact(Self.trimmed(PQerrorMessage(connection))))")
        }
        var received: [(String, String)] = []
        while let notify = PQnotifies(connection) {
            received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    /// Runs statements that return no rows, such as `SET` or DDL, in one round trip.
    public func execute(_ sql: String) throws(PostgresError) {
        let result = PQexec(connection, sql)
        _ = try consume(result, binary: false)
    }

    /// Runs `statement` (prepared once per connection when it has a name) and returns its rows.
    /// With `binary`, columns come back in PostgreSQL's binary format: `bytea` as raw bytes and
    /// `int8` as 8 big-endian bytes, which saves parsing on the hot path.
    @discardableResult
    public func query(_ statement: SQLStatement, binary: Bool = false) throws(PostgresError) -> PostgresRows {
        if let name = statement.name, !prepared.contains(name) {
            let result = PQprepare(connection, name, statement.sql, Int32(statement.parameters.count), nil)
            _ = try consume(result, binary: false)
            prepared.insert(name)
        }
        let result = withOptionalCStrings(statement.parameters) { parameters in
            if let name = statement.name {
                return PQexecPrepared(
                    connection, name, Int32(statement.parameters.count), parameters, nil, nil, binary ? 1 : 0)
            }
            return PQexecParams(
                connection, statement.sql, Int32(statement.parameters.count), nil, parameters, nil, nil, binary ? 1 : 0)
        }
        return try consume(result, binary: binary)
    }

    private func consume(_ result: OpaquePointer?, binary: Bool) throws(PostgresError) -> PostgresRows {
        defer { PQclear(result) }
        guard let result else {
            throw PostgresError(connectionLostOrFailed, "PostgreSQL: \(redactor.redact(Self.trimmed(PQerrorMessage(connection))))")
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            return PostgresRows(copying: result, binary: binary)
        default:
            let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = redactor.redact(Self.trimmed(PQresultErrorMessage(result)))
            throw PostgresError(connectionLostOrFailed, "PostgreSQL: \(message)", sqlState: sqlState)
        }
    }

    private var connectionLostOrFailed: PostgresError.Code {
        PQstatus(connection) == CONNECTION_OK ? .statementFailed : .connectionLost
    }

    private static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        return String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: "; ").replacingOccurrences(of: "\t", with: "")
    }
}

/// Rows copied out of a `PGresult`.
public struct PostgresRows: Sendable {
    /// Cell values as raw bytes (text or binary format, as requested); `nil` is SQL NULL.
    public let rows: [[[UInt8]?]]
    public let binary: Bool

    init(copying result: OpaquePointer, binary: Bool) {
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        var rows: [[[UInt8]?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var cells: [[UInt8]?] = []
            cells.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                if PQgetisnull(result, row, column) == 1 {
                    cells.append(nil)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let value = PQgetvalue(result, row, column)!
                cells.append(value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) })
            }
            rows.append(cells)
        }
        self.rows = rows
        self.binary = binary
    }

    public var count: Int { rows.count }

    public func text(_ row: Int, _ column: Int) -> String? {
        rows[row][column].map { String(decoding: $0, as: UTF8.self) }
    }

    public func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        rows[row][column]
    }

    /// An `int8` (or smaller integer) cell, in either format.
    public func int64(_ row: Int, _ column: Int) -> Int64? {
        guard let cell = rows[row][column] else { return nil }
        if binary {
            return cell.reduce(0) { $0 << 8 | Int64($1) }
        }
        return Int64(String(decoding: cell, as: UTF8.self))
    }

    public func bool(_ row: Int, _ column: Int) -> Bool? {
        guard let cell = rows[row][column], let first = cell.first else { return nil }
        return binary ? first == 1 : first == UInt8(ascii: "t")
    }
}

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { UnsafePointer(strdup($0)) }
    defer { pointers.forEach { free(UnsafeMutableRawPointer(mutating: $0)) } }
    return body(pointers + [nil])
}

private func withOptionalCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { $0.map { UnsafePointer(strdup($0)) } }
    defer { pointers.forEach { $0.map { free(UnsafeMutableRawPointer(mutating: $0)) } } }
    return body(pointers.map { $0 ?? nil })
}
