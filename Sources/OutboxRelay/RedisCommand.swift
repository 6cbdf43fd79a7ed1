/// One Redis command as the argument array that goes on the wire, built by the relay core and
/// sent unchanged by the Redis adapter.
public struct RedisCommand: Sendable, Equatable, CustomStringConvertible {
    public var arguments: [[UInt8]]

    public init(_ arguments: [[UInt8]]) {
        self.arguments = arguments
    }

    public init(_ arguments: String...) {
        self.arguments = arguments.map { Array($0.utf8) }
    }

    /// The command's name and arguments as text, long arguments shortened; for logs and test failures.
    public var description: String {
        arguments.map { argument in
            let text = String(decoding: argument.prefix(60), as: UTF8.self)
            return argument.count > 60 ? text + "…" : text
        }.joined(separator: " ")
    }
}

/// A reply from Redis, copied out of the client library.
public indirect enum RedisReply: Sendable, Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RedisReply])

    /// The reply as text when it is a status or a bulk string.
    public var text: String? {
        switch self {
        case .status(let text): return text
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }
}
