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
    /// Where commands are encoded before they are written, kept from one call to the next.
    private var staging: [UInt8] = []
    /// Where replies are read into before hiredis's reader takes them.
    private var readChunk = [UInt8](repeating: 0, count: 64 * 1024)
    /// Set once an I/O error left the connection in an unknown state; it must then be replaced.
    public private(set) var isBroken = false
    /// Replies to commands sent with ``sendWithoutWaiting(_:)`` that ``receive(_:)`` has not read:
    /// a caller that gave up on them (a lease abandoned mid-pipeline) leaves the connection
    /// unusable, since the next reply read would answer an old command.
    public private(set) var unreadReplies = 0

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
        transport.shutDown()
        close(socket)
        redisReaderFree(reader)
    }

    /// Sends `commands` in one write (a pipeline) and reads one reply per command. A command that
    /// Redis answers with an error comes back as `.error`; an I/O failure throws `.connectionLost`.
    public func send(_ commands: [RedisCommand]) throws(RedisError) -> [RedisReply] {
        try send(commands, connecting: false)
    }

    /// Sends `commands` in one write without reading their replies, which ``receive(_:)`` reads
    /// later, in order (Redis answers while the caller does other work).
    public func sendWithoutWaiting(_ commands: [RedisCommand]) throws(RedisError) {
        guard !isBroken else { throw RedisError(.connectionLost, "the connection to Redis at \(endpoint) is broken") }
        do {
            try write(commands)
            unreadReplies += commands.count
        } catch {
            isBroken = true
            throw RedisError(.connectionLost, "lost the connection to Redis at \(endpoint): \(error.message)")
        }
    }

    /// The connection's socket, to wait on with ``SocketReadiness``.
    public var descriptor: Int32 { socket }

    /// Whether bytes of a reply have arrived and are not read yet: buffered here, in TLS, or in the
    /// socket. ``receive(_:)`` then reads at once (or waits only for the rest of a reply that has
    /// begun to arrive).
    public var hasUnreadBytes: Bool {
        reader.pointee.len > reader.pointee.pos || transport.pendingBytes > 0
            || !SocketReadiness.waitForInput([socket], milliseconds: 0).isEmpty
    }

    /// Reads the next `count` replies to commands sent with ``sendWithoutWaiting(_:)``.
    public func receive(_ count: Int) throws(RedisError) -> [RedisReply] {
        guard !isBroken else { throw RedisError(.connectionLost, "the connection to Redis at \(endpoint) is broken") }
        do {
            var replies: [RedisReply] = []
            replies.reserveCapacity(count)
            while replies.count < count {
                replies.append(try readReply())
                unreadReplies -= 1
            }
            return replies
        } catch {
            isBroken = true
            throw RedisError(.connectionLost, "lost the connection to Redis at \(endpoint): \(error.message)")
        }
    }

    private func send(_ commands: [RedisCommand], connecting: Bool) throws(RedisError) -> [RedisReply] {
        guard !isBroken else { throw RedisError(.connectionLost, "the connection to Redis at \(endpoint) is broken") }
        guard unreadReplies == 0 else {
            isBroken = true
            throw RedisError(.connectionLost, "the connection to Redis at \(endpoint) has \(unreadReplies) unread replies of an abandoned pipeline")
        }
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

    /// Writes the commands in the Redis protocol. Headers and small arguments are encoded into the
    /// connection's staging buffer; an argument of ``gatheredBytes`` or more (a job's JSON) is not
    /// copied there but written from its own storage, next to the staged bytes, by one gathering
    /// write of up to ``gatheredPerWrite`` such arguments (`sendmsg`); so each job's bytes are
    /// copied once more only by the kernel. The buffer is kept from one call to the next.
    private func write(_ commands: [RedisCommand]) throws(SocketError) {
        // Built in a local buffer (left empty by every write): every append to a stored property
        // of a class would pay a dynamic exclusivity check, and a group's pushes are hundreds of
        // thousands of appends.
        var staged = staging
        staging = []
        defer {
            // A rare huge command's buffer is not kept.
            if staged.capacity > 2 * Self.writeChunkBytes { staged = [] }
            staged.removeAll(keepingCapacity: true)
            staging = staged
        }
        var segments: [Segment] = []
        var stagedFrom = 0
        var gathered = 0
        for command in commands {
            Self.appendHeader(UInt8(ascii: "*"), command.arguments.count, to: &staged)
            for argument in command.arguments {
                Self.appendHeader(UInt8(ascii: "$"), argument.count, to: &staged)
                if argument.count >= Self.gatheredBytes {
                    Self.closeStaged(staged.count, from: &stagedFrom, into: &segments)
                    segments.append(.argument(argument))
                    gathered += 1
                } else {
                    staged.append(contentsOf: argument)
                }
                staged.append(0x0D)
                staged.append(0x0A)
                if gathered >= Self.gatheredPerWrite || staged.count >= Self.writeChunkBytes {
                    Self.closeStaged(staged.count, from: &stagedFrom, into: &segments)
                    try write(segments, staged: staged)
                    segments.removeAll(keepingCapacity: true)
                    staged.removeAll(keepingCapacity: true)
                    stagedFrom = 0
                    gathered = 0
                }
            }
        }
        Self.closeStaged(staged.count, from: &stagedFrom, into: &segments)
        try write(segments, staged: staged)
    }

    /// Ends the staged bytes since `stagedFrom` as a segment, if there are any.
    private static func closeStaged(_ end: Int, from stagedFrom: inout Int, into segments: inout [Segment]) {
        if end > stagedFrom { segments.append(.staged(stagedFrom..<end)) }
        stagedFrom = end
    }

    /// A piece of the bytes to write: a range of the staging buffer, or an argument's own bytes.
    private enum Segment {
        case staged(Range<Int>)
        case argument([UInt8])
    }

    /// Arguments this long are written from their own storage rather than copied.
    private static let gatheredBytes = 1024
    /// At most this many such arguments go into one gathering write.
    private static let gatheredPerWrite = 128
    /// How much the staging buffer gathers before it is written.
    private static let writeChunkBytes = 256 * 1024

    /// Writes `segments` (ranges of `staged`, or arguments) in order, whole.
    private func write(_ segments: [Segment], staged: [UInt8]) throws(SocketError) {
        guard !segments.isEmpty else { return }
        let arguments = segments.compactMap { segment -> [UInt8]? in
            if case .argument(let bytes) = segment { return bytes }
            return nil
        }
        var pinned: [UnsafeRawBufferPointer] = []
        pinned.reserveCapacity(arguments.count)
        let result = staged.withUnsafeBytes { staged in
            Self.withStorage(of: arguments[...], pinned: &pinned) { storage in
                var vectors: [iovec] = []
                vectors.reserveCapacity(segments.count)
                var next = 0
                for segment in segments {
                    let bytes: UnsafeRawBufferPointer
                    switch segment {
                    case .staged(let range): bytes = UnsafeRawBufferPointer(rebasing: staged[range])
                    case .argument:
                        bytes = storage[next]
                        next += 1
                    }
                    vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count))
                }
                return Result { () throws(SocketError) in try writeAll(&vectors) }
            }
        }
        try result.get()
    }

    /// Calls `body` with the storage of every one of `arguments`, all valid during the call: each
    /// array lends its storage for a closure only, so the closures nest, one per argument
    /// (at most ``gatheredPerWrite`` deep).
    private static func withStorage(
        of arguments: ArraySlice<[UInt8]>, pinned: inout [UnsafeRawBufferPointer],
        _ body: ([UnsafeRawBufferPointer]) -> Result<Void, SocketError>
    ) -> Result<Void, SocketError> {
        guard let first = arguments.first else { return body(pinned) }
        return first.withUnsafeBytes { storage in
            pinned.append(storage)
            return withStorage(of: arguments.dropFirst(), pinned: &pinned, body)
        }
    }

    /// Writes all of `vectors`, again and again after partial writes.
    private func writeAll(_ vectors: inout [iovec]) throws(SocketError) {
        var first = 0
        while first < vectors.count {
            var written = try vectors[first...].withUnsafeBufferPointer { buffer in
                Result { () throws(SocketError) in try transport.write(gathering: buffer) }
            }.get()
            while written > 0, first < vectors.count {
                if written >= vectors[first].iov_len {
                    written -= vectors[first].iov_len
                    first += 1
                } else {
                    vectors[first].iov_base += written
                    vectors[first].iov_len -= written
                    written = 0
                }
            }
        }
    }

    /// Appends `*<count>\r\n` or `$<count>\r\n`, digit by digit.
    private static func appendHeader(_ marker: UInt8, _ count: Int, to buffer: inout [UInt8]) {
        buffer.append(marker)
        if count < 10 {
            buffer.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: count))
        } else {
            var divisor = 10
            while divisor <= count / 10 { divisor *= 10 }
            var rest = count
            while divisor > 0 {
                buffer.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        buffer.append(0x0D)
        buffer.append(0x0A)
    }

    private func readReply() throws(SocketError) -> RedisReply {
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
            let count = try readChunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SocketError) in try transport.read(buffer) }
            }.get()
            if count == 0 { throw SocketError(message: "Redis closed the connection") }
            let fed = readChunk.withUnsafeBytes { redisReaderFeed(reader, $0.baseAddress!.assumingMemoryBound(to: CChar.self), count) }
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
