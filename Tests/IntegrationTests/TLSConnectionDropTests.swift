import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Redis over TLS dropping the relay's connection while it writes: the relay must log, reconnect
/// and go on, as over plain TCP, instead of dying of SIGPIPE.
@Suite(.serialized) struct TLSConnectionDropTests {
    @Test func survivesConnectionsKilledDuringLargeWrites() throws {
        let certs = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-relay-drop-certs-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let (made, output) = try OperationsTests.run([OperationsTests.repository.appendingPathComponent("scripts/test-certs.sh").path, certs])
        try #require(made == 0, "\(output)")
        let tls = RedisTLS(caFile: "\(certs)/ca.crt", certificateFile: "\(certs)/client.crt", keyFile: "\(certs)/client.key")
        let redis = try PrivateRedis(extraArguments: [
            "--port", "0", "--tls-port", "PORT", "--tls-cert-file", "\(certs)/server.crt", "--tls-key-file", "\(certs)/server.key",
            "--tls-ca-cert-file", "\(certs)/ca.crt", "--tls-auth-clients", "yes",
        ], tls: tls, port: freePort())
        defer { redis.destroy() }
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        // 600 jobs of 32 KB: pushes of several megabytes, so a kill lands in the middle of one.
        let rows = 600
        let filler = String(repeating: "x", count: 32 * 1024)
        try outbox.insert((0..<rows).map { (.named("k\($0 % 3)"), #"{"class":"J","queue":"q","args":[\#($0),"\#(filler)"]}"#) })

        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", "rediss://localhost:\(redis.port)/0",
            "--redis-tls-ca", "\(certs)/ca.crt", "--redis-tls-cert", "\(certs)/client.crt", "--redis-tls-key", "\(certs)/client.key",
            "--table", outbox.table.description, "--batch-size", "200", "--network-timeout", "5", "--sleep-on-empty", "0.05",
        ])
        let admin = try RedisConnection(endpoint: redis.adminEndpoint, timeout: 5, tls: tls)
        // Kill the relay's connections again and again while it pushes.
        var kills = 0
        let deadline = Date(timeIntervalSinceNow: 15)
        while kills < 10 && Date() < deadline && relay.process.isRunning {
            if case .integer(let killed) = try admin.send([RedisCommand("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")])[0], killed > 0 {
                kills += 1
            }
            Thread.sleep(forTimeInterval: 0.03)
        }
        #expect(kills > 0, "the relay connected: \(relay.log)")
        try waitUntil("every row relayed after the kills", seconds: 60) { try outbox.pendingCount() == 0 || !relay.process.isRunning }
        #expect(relay.process.isRunning, "the relay survived \(kills) killed connections: status \(relay.process.terminationStatus), \(relay.process.terminationReason == .uncaughtSignal ? "signal" : "exit"): \(relay.log)")
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(relay.log.contains("error lost the connection to Redis at rediss://localhost:\(redis.port)/0: "), "drops are logged: \(relay.log)")
        #expect(relay.log.contains("info relaying again"), "\(relay.log)")
        #expect(try outbox.pendingCount() == 0)
        guard case .array(let items) = try admin.send([RedisCommand("LRANGE", "queue:q", "0", "-1")])[0] else {
            Issue.record("queue:q is not a list")
            return
        }
        let numbers = items.compactMap { item -> Int? in
            guard let data = item.text?.data(using: .utf8), let job = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let args = job["args"] as? [Any] else { return nil }
            return args.first as? Int
        }
        #expect(numbers.count == rows, "every row in Redis once, no duplicate")
        #expect(Set(numbers) == Set(0..<rows))
    }
}
