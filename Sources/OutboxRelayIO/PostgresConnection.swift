internal import CLibPQ
import Foundation
import OutboxRelay

/// One blocking libpq connection. It owns its `PGconn` and frees it in `deinit`; results are copied
/// into Swift values before the `PGresult` is cleared, so nothing above this type sees a pointer.
/// Not thread-safe: one owner (the relay's worker thread) uses it at a time.
public final class PostgresConnection {
    private let connection: OpaquePointer
    private var prepared: Set<String> = []
    /// Groups of statements sent down the pipeline whose results are not all collected yet.
    private var groups: [PipelineGroup] = []

    private struct PipelineGroup {
        var remaining: Int
        let binary: Bool
    }
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
        let values = Self.values(of: options)
        PQconninfoFree(options)
        if let problem = Self.misreadPassword(connectionString, values) {
            throw PostgresError(.invalidConnectionString, "invalid database URL '\(redactor.redact(connectionString))': \(problem)")
        }
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

    /// The password in `connectionString` as libpq reads it, if it has one, so callers can keep it
    /// out of output.
    static func password(in connectionString: String) -> String? {
        guard let options = PQconninfoParse(connectionString, nil) else { return nil }
        defer { PQconninfoFree(options) }
        return values(of: options)["password"]
    }

    /// The options libpq parsed that have a value, by keyword.
    private static func values(of options: UnsafeMutablePointer<PQconninfoOption>) -> [String: String] {
        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { values[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return values
    }

    /// Why libpq would read part of a URL's user name or password as its host or port: an
    /// unencoded `@` or `/` in the password (`postgresql://u:a@b@db/app` makes the host
    /// `b@db`, and libpq would repeat it in every connection error). Such a URL is refused before
    /// any connection is tried; nil for a URL libpq reads as it was meant.
    private static func misreadPassword(_ connectionString: String, _ values: [String: String]) -> String? {
        let lowered = connectionString.lowercased()
        guard lowered.hasPrefix("postgresql://") || lowered.hasPrefix("postgres://"), connectionString.contains("@") else { return nil }
        // A user name may hold an encoded @ (Azure's user%40server); a host or port never does.
        let hostsHoldAt = ["host", "hostaddr", "port"].contains { values[$0]?.contains("@") == true }
        let portIsNumber = (values["port"] ?? "").split(separator: ",", omittingEmptySubsequences: false)
            .allSatisfy { $0.isEmpty || $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
        guard hostsHoldAt || !portIsNumber else { return nil }
        return "libpq would read part of the user name or password as the host or port; "
            + "percent-encode '@', '/', '?', '#' and '%' in them (%40, %2F, %3F, %23, %25)"
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
        try prepare(statement)
        return try consume(run(statement, binary: binary), binary: binary)
    }

    /// Runs `statement` (already prepared when it has a name) and waits for its result.
    private func run(_ statement: SQLStatement, binary: Bool) -> OpaquePointer? {
        withOptionalCStrings(statement.parameters) { parameters in
            if let name = statement.name {
                return PQexecPrepared(connection, name, Int32(statement.parameters.count), parameters, nil, nil, binary ? 1 : 0)
            }
            return PQexecParams(connection, statement.sql, Int32(statement.parameters.count), nil, parameters, nil, nil, binary ? 1 : 0)
        }
    }

    /// Sends `statements` down the connection's pipeline as one group, without waiting: the
    /// group runs as one implicit transaction after any group sent before it, while the caller
    /// does other work, and ``receiveNext()`` collects the results, statement by statement, in
    /// the order sent. Until they are all collected, ``query(_:binary:)`` is not available.
    public func send(_ statements: [SQLStatement], binary: Bool) throws(PostgresError) {
        guard !statements.isEmpty else { return }
        if groups.isEmpty {
            for statement in statements { try prepare(statement) }
            guard PQenterPipelineMode(connection) == 1 else { throw failure() }
        } else {
            precondition(statements.allSatisfy { $0.name.map(prepared.contains) ?? true }, "prepare statements before a pipeline is in flight")
        }
        do throws(PostgresError) {
            try queue(statements, binary: binary)
        } catch {
            // The connection is beyond use; its owner drops it on any error.
            groups = []
            throw error
        }
        groups.append(PipelineGroup(remaining: statements.count, binary: binary))
    }

    private func queue(_ statements: [SQLStatement], binary: Bool) throws(PostgresError) {
        for statement in statements {
            let sent = withOptionalCStrings(statement.parameters) { parameters in
                if let name = statement.name {
                    return PQsendQueryPrepared(connection, name, Int32(statement.parameters.count), parameters, nil, nil, binary ? 1 : 0)
                }
                return PQsendQueryParams(
                    connection, statement.sql, Int32(statement.parameters.count), nil, parameters, nil, nil, binary ? 1 : 0)
            }
            guard sent == 1 else { throw failure() }
        }
        guard PQpipelineSync(connection) == 1 else { throw failure() }
    }

    /// Prepares `statement` now, so that it can be sent while a pipeline is in flight.
    public func prepareAhead(_ statement: SQLStatement) throws(PostgresError) {
        precondition(groups.isEmpty, "a pipeline is in flight")
        try prepare(statement)
    }

    /// Whether statements sent with ``send(_:binary:)`` still have results to collect.
    public var isAwaitingResults: Bool { !groups.isEmpty }

    /// Waits for the result of the oldest statement sent with ``send(_:binary:)`` and not yet
    /// collected. A failed statement throws; the statements after it in its group did not run
    /// (their transaction rolled back) and throw too, while later groups run normally.
    public func receiveNext() throws(PostgresError) -> PostgresRows {
        let binary = groups.first?.binary ?? false
        return try receiveNext(visit: { PostgresRows(copying: $0, binary: binary) })
    }

    private func receiveNext<R>(visit: (OpaquePointer) -> R) throws(PostgresError) -> R {
        precondition(!groups.isEmpty, "nothing was sent")
        groups[0].remaining -= 1
        let outcome: Result<R, PostgresError>
        if let result = PQgetResult(connection) {
            if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                outcome = .failure(PostgresError(.statementFailed, "PostgreSQL: not run, an earlier statement of its transaction failed"))
            } else {
                outcome = Result { () throws(PostgresError) in try consume(result, visit: visit) }
            }
            // Each statement's results end with a null result.
            while PQstatus(connection) == CONNECTION_OK, let extra = PQgetResult(connection) { PQclear(extra) }
        } else {
            outcome = .failure(failure())
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            groups = []
            return try outcome.get()
        }
        if groups[0].remaining == 0 {
            // The group's sync point.
            if let sync = PQgetResult(connection) { PQclear(sync) }
            groups.removeFirst()
            if groups.isEmpty, PQexitPipelineMode(connection) != 1 {
                _ = try outcome.get()
                throw failure()
            }
        }
        return try outcome.get()
    }

    private func prepare(_ statement: SQLStatement) throws(PostgresError) {
        guard let name = statement.name, !prepared.contains(name) else { return }
        let result = PQprepare(connection, name, statement.sql, Int32(statement.parameters.count), nil)
        _ = try consume(result, binary: false)
        prepared.insert(name)
    }

    private func failure() -> PostgresError {
        PostgresError(connectionLostOrFailed, "PostgreSQL: \(redactor.redact(Self.trimmed(PQerrorMessage(connection))))")
    }

    /// Like ``receiveNext()``, but turns each row into a `T` straight from libpq's result, without
    /// copying every cell first: `decode` sees a ``PostgresRow`` that is valid only during the call.
    public func receiveNext<T>(decoding decode: (PostgresRow) -> T) throws(PostgresError) -> [T] {
        try receiveNext(visit: { Self.decodeRows($0, decode) })
    }

    /// Like ``query(_:binary:)`` in binary format, decoding each row as ``receiveNext(decoding:)`` does.
    public func query<T>(_ statement: SQLStatement, decoding decode: (PostgresRow) -> T) throws(PostgresError) -> [T] {
        try prepare(statement)
        return try consume(run(statement, binary: true), visit: { Self.decodeRows($0, decode) })
    }

    private static func decodeRows<T>(_ result: OpaquePointer, _ decode: (PostgresRow) -> T) -> [T] {
        let count = Int(PQntuples(result))
        var rows: [T] = []
        rows.reserveCapacity(count)
        for row in 0..<count { rows.append(decode(PostgresRow(result: result, row: Int32(row)))) }
        return rows
    }

    private func consume(_ result: OpaquePointer?, binary: Bool) throws(PostgresError) -> PostgresRows {
        try consume(result, visit: { PostgresRows(copying: $0, binary: binary) })
    }

    /// Checks a result and turns it into rows with `visit`, then clears it.
    private func consume<R>(_ result: OpaquePointer?, visit: (OpaquePointer) -> R) throws(PostgresError) -> R {
        defer { PQclear(result) }
        guard let result else { throw failure() }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            return visit(result)
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

/// One row of a result in binary format, readable only while the result it came from is alive
/// (inside the `decoding` closure of ``PostgresConnection/query(_:decoding:)``).
public struct PostgresRow {
    fileprivate let result: OpaquePointer
    fileprivate let row: Int32

    public func isNull(_ column: Int) -> Bool {
        PQgetisnull(result, row, Int32(column)) == 1
    }

    /// A cell's bytes, copied once; `nil` for SQL NULL.
    public func bytes(_ column: Int) -> [UInt8]? {
        guard !isNull(column) else { return nil }
        let length = Int(PQgetlength(result, row, Int32(column)))
        return PQgetvalue(result, row, Int32(column))!.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// An `int8`, `int4`, `int2` or `timestamp` cell as a big-endian integer; `nil` for SQL NULL.
    public func int64(_ column: Int) -> Int64? {
        guard !isNull(column) else { return nil }
        let length = Int(PQgetlength(result, row, Int32(column)))
        return PQgetvalue(result, row, Int32(column))!.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
            var value: Int64 = 0
            for index in 0..<length { value = value << 8 | Int64(bytes[index]) }
            // Narrower integers are sign-extended.
            return length < 8 && length > 0 && bytes[0] & 0x80 != 0 ? value - (1 << (8 * length)) : value
        }
    }

    public func text(_ column: Int) -> String? {
        bytes(column).map { String(decoding: $0, as: UTF8.self) }
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
