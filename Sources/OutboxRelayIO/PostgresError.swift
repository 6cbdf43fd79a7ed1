/// A failure talking to PostgreSQL. ``description`` is meant for operators: it says what failed
/// and carries the server's message, with any password from the connection string removed.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The connection string could not be parsed.
        case invalidConnectionString
        /// No connection could be made (server down, refused, authentication failed).
        case connectionFailed
        /// The connection broke; anything it held, leases included, is gone.
        case connectionLost
        /// The server refused a statement; the connection is still usable.
        case statementFailed
    }

    public let code: Code
    public let message: String
    /// The SQLSTATE the server reported, when there was one (for example `42P01`, undefined table).
    public let sqlState: String?

    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }

    /// The table or relation named in the statement does not exist.
    public var isUndefinedTable: Bool { sqlState == "42P01" }
}
