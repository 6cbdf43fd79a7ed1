internal import CHiredis
import Foundation
import OutboxRelay

/// One blocking connection to Redis. The relay writes commands in the Redis protocol itself and
/// uses hiredis's reply reader to parse the answers; the socket is its own, so every read and
/// write has a timeout. It owns the socket and the reader and frees both in `deinit`.
/// Not thread-safe: one owner uses it at a time.
public final class RedisConnection {
    private let socket: Int32
    private let transport: any RedisTransport
    private let reader: UnsafeMutablePointer<redisReader>
    private let endpoint: RedisEndpoint
    /// Set once an I/O error left the connection in an unknown state; it must then be replaced.
    public private(set) var isBroken = false

    /// Connects (with TLS for `rediss://`), then authenticates and selects the database as
    /// `endpoint` says; every network call waits at most `timeout` seconds.
    public init(endpoint: RedisEndpoint, timeout: Double, tls: RedisTLS = RedisTLS()) throws(RedisError) {
        self.endpoint = endpoint
        let socket: Int32
        do {
            socket = try SocketConnector.connect(to: endpoint.address, timeout: timeout)
        } catch {
            throw RedisError(.connectionFailed, "cannot connect to Redis at \(endpoint): \(error.message)")
        }
        self.socket = socket
        if endpoint.tls, case .tcp(let host, _) = endpoint.address {
            do {
                transport = try TLSTransport(socket: socket, host: host, settings: tls)
            } catch {
                close(socket)
                throw RedisError(.connectionFailed, "cannot connect to Redis at \(endpoint): \(error.message)")
            }
        } else {
            transport = PlainTransport(socket: socket)
        }
        guard let reader = redisReaderCreate() else {
            close(socket)
            throw RedisError(.connectionFailed, "hiredis could not allocate a reply reader")
        }
        self.reader = reader
        var handshake: [RedisCommand] = []
        if let password = endpoint.password {
            handshake.append(RedisCommand((["AUTH"] + (endpoint.username.map { [$0] } ?? []) + [password]).map { Array($0.utf8) }))
        }
        if endpoint.database != 0 { handshake.append(RedisCommand("SELECT", String(endpoint.database))) }
        handshake.append(RedisCommand("PING"))
        let replies = try send(handshake, connecting: true)
        for (command, reply) in zip(handshake, replies) {
            if case .error(let message) = reply {
                let name = String(decoding: command.arguments[0], as: UTF8.self)
                throw RedisError(.connectionFailed, "Redis at \(endpoint) refused \(name): \(message)")
            }
        }
    }

    deinit {
        close(socket)
        redisReaderFree(reader)
    }

    /// Sends `commands` in one write (a pipeline) and reads one reply per command. A command that
    /// Redis answers with an error comes back as `.error`; an I/O failure throws `.connectionLost`.
    public func send(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        try send(commands, connecting: false)
    }

    private func send(_ commands: [RedisCommand], connecting: Bool) throws(RedisError) -> [RedisReply] {
        guard !isBroken else { throw RedisError(.connectionLost, "the connection to Redis at \(endpoint) is broken") }
        do {
            try write(commands)
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            while replies.count < commands.count {
                replies.append(try readReply())
            }
            return replies
        } catch {
            isBroken = true
            let verb = connecting ? "cannot connect to" : "lost the connection to"
            throw RedisError(connecting ? .connectionFailed : .connectionLost, "\(verb) Redis at \(endpoint): \(error.message)")
        }
    }

    /// Writes the commands in the Redis protocol through a 64 KB staging buffer; a large argument
    /// (a job's JSON) goes straight from its own storage, so a batch is never copied whole.
    private func write(_ commands: [RedisCommand]) throws(SocketError) {
        var staging: [UInt8] = []
        staging.reserveCapacity(64 * 1024)
        for command in commands {
            staging.append(contentsOf: "*\(command.arguments.count)\r\n".utf8)
            for argument in command.arguments {
                staging.append(contentsOf: "$\(argument.count)\r\n".utf8)
                if argument.count > 16 * 1024 {
                    try writeAll(staging)
                    staging.removeAll(keepingCapacity: true)
                    try writeAll(argument)
                } else {
                    staging.append(contentsOf: argument)
                }
                staging.append(contentsOf: [0x0D, 0x0A])
                if staging.count >= 48 * 1024 {
                    try writeAll(staging)
                    staging.removeAll(keepingCapacity: true)
                }
            }
        }
        try writeAll(staging)
    }

    private func writeAll(_ bytes: [UInt8]) throws(SocketError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Result { () throws(SocketError) in try transport.write(UnsafeRawBufferPointer(rebasing: raw[offset...])) }
            }
            offset += try written.get()
        }
    }

    private func readReply() throws(SocketError) -> RedisReply {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
                let message = withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                throw SocketError(message: "protocol error: \(message)")
            }
            if let raw {
                defer { freeReplyObject(raw) }
                return RedisReply(copying: raw.assumingMemoryBound(to: redisReply.self))
            }
            let count = try chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SocketError) in try transport.read(buffer) }
            }.get()
            if count == 0 { throw SocketError(message: "Redis closed the connection") }
            let fed = chunk.withUnsafeBytes { redisReaderFeed(reader, $0.baseAddress!.assumingMemoryBound(to: CChar.self), count) }
            guard fed == REDIS_OK else { throw SocketError(message: "protocol error while reading a reply") }
        }
    }
}

extension RedisReply {
    init(copying reply: UnsafeMutablePointer<redisReply>) {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            self = .bulk(Array(UnsafeRawBufferPointer(start: value.str, count: value.len)))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: UnsafeRawBufferPointer(start: value.str, count: value.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            self = .array((0..<value.elements).map { RedisReply(copying: value.element[$0]!) })
        default:
            self = .null
        }
    }
}
