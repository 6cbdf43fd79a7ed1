/// A failure talking to Redis, with a message an operator can act on.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No connection could be made, or the server refused AUTH or SELECT.
        case connectionFailed
        /// The connection broke or timed out; whether the last commands ran is unknown.
        case connectionLost
        /// Redis answered a command with an error; the connection is still usable.
        case commandFailed
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
