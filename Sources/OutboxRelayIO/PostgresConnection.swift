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

    /// Whether the connection is still up, as far as libpq knows without a round trip.
    public var isHealthy: Bool { !isBroken && PQstatus(connection) == CONNECTION_OK }
    /// Set when a group's commit did not come back (see ``receiveNext()``): libpq's pipeline is
    /// out of step, so the owner drops the connection.
    private var isBroken = false

    /// What the session is for, named in its error messages (`PostgreSQL (reading session): …`),
    /// when the owner holds several; nil for the main one.
    public var role: String?
    /// Whether the session's statements change rows. A group whose sync point never came back
    /// then may not have committed; a session that only reads (the reader) says its read did not
    /// complete instead, which is all it means there.
    public var writesRows = true
    /// How messages name this connection.
    private var server: String { role.map { "PostgreSQL (\($0))" } ?? "PostgreSQL" }

    /// The server's process id for this connection, as `pg_stat_activity.pid` shows it.
    public var backendPID: Int32 { PQbackendPID(connection) }

    /// The connection's socket, to wait on for notifications.
    public var socket: Int32 { PQsocket(connection) }

    /// Reads whatever arrived on the socket and returns the notifications (LISTEN) received,
    /// as `(channel, payload)`; throws when the connection broke.
    public func notifications() throws(PostgresError) -> [(channel: String, payload: String)] {
        guard PQconsumeInput(connection) == 1 else {
            throw PostgresError(.connectionLost, "\(server): \(redactor.redact(Self.trimmed(PQerrorMessage(connection))))")
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
    /// `int8` as 8 big-endian bytes, which saves parsing on the hot path. Every statement takes
    /// one path: ``send(_:binary:)`` down the pipeline, then ``receiveNext()``.
    @discardableResult
    public func query(_ statement: SQLStatement, binary: Bool = false) throws(PostgresError) -> PostgresRows {
        precondition(groups.isEmpty, "collect the pipeline's results first")
        try send([statement], binary: binary)
        return try receiveNext()
    }

    /// Sends `statements` down the connection's pipeline as one group, without waiting: the
    /// group runs as one implicit transaction after any group sent before it, while the caller
    /// does other work, and ``receiveNext()`` collects the results, statement by statement, in
    /// the order sent. Until they are all collected, ``query(_:binary:)`` is not available.
    public func send(_ statements: [SQLStatement], binary: Bool) throws(PostgresError) {
        guard !statements.isEmpty else { return }
        guard !isBroken else { throw PostgresError(.connectionLost, "\(server): the connection was given up after a commit that did not come back") }
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

    /// Whether the oldest statement's result has arrived, so that ``receiveNext()`` would not wait
    /// for PostgreSQL: reads what the socket holds into libpq's buffer, without blocking.
    public func isResultReady() throws(PostgresError) -> Bool {
        precondition(!groups.isEmpty, "nothing was sent")
        guard PQconsumeInput(connection) == 1 else { throw failure() }
        return PQisBusy(connection) == 0
    }

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
                outcome = .failure(PostgresError(.statementFailed, "\(server): not run, an earlier statement of its transaction failed"))
            } else {
                outcome = Result { () throws(PostgresError) in try consume(result, visit: visit) }
            }
            // Each statement's results end with a null result.
            while PQstatus(connection) == CONNECTION_OK, let extra = PQgetResult(connection) { PQclear(extra) }
        } else {
            outcome = .failure(failure())
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            // The group's transaction commits at its sync point, which never came: whatever the
            // result said, its statements may not have committed.
            groups = []
            _ = try outcome.get()
            throw failure()
        }
        if groups[0].remaining == 0 {
            // The group's sync point, where its implicit transaction commits: the statements'
            // results arrived before it, so they count only once it came back. A commit refused
            // (a deferred constraint, a serialization failure) or cut off (the server died
            // waiting for its synchronous standby) fails the group's last statement.
            let sync = PQgetResult(connection)
            let committed = sync.map { PQresultStatus($0) == PGRES_PIPELINE_SYNC } ?? false
            let refusal = committed ? "" : Self.trimmed(sync.flatMap { PQresultErrorMessage($0) }.flatMap { $0.pointee == 0 ? nil : $0 } ?? PQerrorMessage(connection))
            PQclear(sync)
            guard committed else {
                // libpq's pipeline is past saving: the connection is given up, with its leases.
                isBroken = true
                groups = []
                let lost = writesRows ? "the transaction did not commit" : "the read did not complete"
                throw PostgresError(.connectionLost, "\(server): \(lost): \(redactor.redact(refusal))")
            }
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
        PostgresError(connectionLostOrFailed, "\(server): \(redactor.redact(Self.trimmed(PQerrorMessage(connection))))")
    }

    /// Like ``receiveNext()``, but turns each row into a `T` straight from libpq's result, without
    /// copying every cell first: `decode` sees a ``PostgresRow`` that is valid only during the call.
    public func receiveNext<T>(decoding decode: (borrowing PostgresRow) -> T) throws(PostgresError) -> [T] {
        try receiveNext(visit: { Self.decodeRows($0, decode) })
    }

    /// Like ``query(_:binary:)`` in binary format, decoding each row as ``receiveNext(decoding:)`` does.
    public func query<T>(_ statement: SQLStatement, decoding decode: (borrowing PostgresRow) -> T) throws(PostgresError) -> [T] {
        precondition(groups.isEmpty, "collect the pipeline's results first")
        try send([statement], binary: true)
        return try receiveNext(decoding: decode)
    }

    private static func decodeRows<T>(_ result: OpaquePointer, _ decode: (borrowing PostgresRow) -> T) -> [T] {
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
            throw PostgresError(connectionLostOrFailed, "\(server): \(message)", sqlState: sqlState)
        }
    }

    private var connectionLostOrFailed: PostgresError.Code {
        PQstatus(connection) == CONNECTION_OK ? .statementFailed : .connectionLost
    }

    static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        return String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: "\n", with: "; ").replacingOccurrences(of: "\t", with: "")
    }
}

func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { UnsafePointer(strdup($0)) }
    defer { pointers.forEach { free(UnsafeMutableRawPointer(mutating: $0)) } }
    return body(pointers + [nil])
}

private func withOptionalCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { $0.map { UnsafePointer(strdup($0)) } }
    defer { pointers.forEach { $0.map { free(UnsafeMutableRawPointer(mutating: $0)) } } }
    return body(pointers.map { $0 ?? nil })
}
