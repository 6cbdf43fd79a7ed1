import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// With requests in flight on both servers, the group driver reads whichever answered first
/// (``SocketReadiness``, ``RedisConnection/hasUnreadBytes``, ``PostgresConnection/isResultReady()``):
/// each must tell an answer that arrived from one still on its way, without blocking.
@Suite struct SocketReadinessTests {
    @Test func aPostgreSQLResultIsReadyOnlyOnceItArrived() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let postgres = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        try postgres.send([SQLStatement("SELECT 7 FROM pg_sleep(0.3)", [])], binary: false)
        #expect(try !postgres.isResultReady(), "the statement sleeps 0.3 s")
        #expect(SocketReadiness.waitForInput([postgres.socket], milliseconds: 5).isEmpty, "nothing to read yet")
        #expect(SocketReadiness.waitForInput([postgres.socket], milliseconds: 5_000) == [postgres.socket])
        try waitUntil("the result read into libpq's buffer", seconds: 5) { try postgres.isResultReady() }
        #expect(try postgres.receiveNext().text(0, 0) == "7")
    }

    @Test func aRedisReplyIsUnreadOnlyOnceItArrived() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let redis = try RedisConnection(endpoint: outbox.redisEndpoint, timeout: 5)
        #expect(!redis.hasUnreadBytes)
        try redis.sendWithoutWaiting([RedisCommand("BLPOP", "outbox-relay-test:never", "0.3")])
        #expect(!redis.hasUnreadBytes, "BLPOP waits 0.3 s")
        #expect(SocketReadiness.waitForInput([redis.descriptor], milliseconds: 5).isEmpty)
        try waitUntil("the reply arrived", seconds: 5) { redis.hasUnreadBytes }
        #expect(try redis.receive(1) == [.null])
        #expect(!redis.hasUnreadBytes, "all read")
    }

    /// Whichever of two sockets has input is named, and only it.
    @Test func namesOnlyTheSocketsWithInput() throws {
        var first: [Int32] = [-1, -1]
        var second: [Int32] = [-1, -1]
        try #require(pipe(&first) == 0 && pipe(&second) == 0)
        defer { for fd in first + second { close(fd) } }
        #expect(SocketReadiness.waitForInput([first[0], second[0]], milliseconds: 1).isEmpty)
        var byte: UInt8 = 1
        #expect(write(second[1], &byte, 1) == 1)
        #expect(SocketReadiness.waitForInput([first[0], second[0]], milliseconds: 1_000) == [second[0]])
    }
}
