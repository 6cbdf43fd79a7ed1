import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// The Redis client's encoding of commands, against a real Redis: small arguments are copied into
/// its staging buffer, large ones (jobs) written from their own storage by gathering writes, and
/// every mix of the two must reach Redis byte for byte, over plain TCP and over TLS.
@Suite(.serialized) struct RedisWriteTests {
    /// Arguments of lengths around every limit of the writer (1 KB gathered, 128 per write,
    /// 256 KB staged), with every byte value, so a misplaced byte or length shows.
    static func arguments() -> [[UInt8]] {
        let lengths = [0, 1, 2, 1023, 1024, 1025, 4096] + (0..<300).map { 700 + $0 * 13 } + [100_000, 300_000, 9]
            + (0..<400).map { 1000 + $0 % 23 }
        return lengths.enumerated().map { index, length in
            (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
        }
    }

    /// LPUSHes the arguments in one command and in a pipeline of one command each, and reads
    /// them back.
    static func roundTrip(_ client: RedisConnection, key: String) throws {
        let values = arguments()
        _ = try client.send([RedisCommand("DEL", key)])
        let one = try client.send([RedisCommand([Array("RPUSH".utf8), Array(key.utf8)] + values)])
        #expect(one == [.integer(Int64(values.count))])
        let pipelined = try client.send(values.map { RedisCommand([Array("RPUSH".utf8), Array(key.utf8), $0]) })
        #expect(pipelined == (1...values.count).map { .integer(Int64(values.count + $0)) })
        let stored = try client.send([RedisCommand("LRANGE", key, "0", "-1")])[0]
        #expect(stored == .array((values + values).map { .bulk($0) }))
        _ = try client.send([RedisCommand("DEL", key)])
    }

    @Test func writesEveryArgumentByteForByte() throws {
        let outbox = try TestOutbox(migrate: false)
        defer { outbox.drop() }
        try Self.roundTrip(outbox.redis, key: "write-test")
    }

    @Test func writesEveryArgumentByteForByteOverTLS() throws {
        let certs = SecureConnectionTests.certificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let redis = try SecureConnectionTests.tlsRedis(certs)
        defer { redis.destroy() }
        let client = try RedisConnection(endpoint: redis.adminEndpoint, timeout: 5, tls: redis.tls)
        try Self.roundTrip(client, key: "write-test")
    }
}
