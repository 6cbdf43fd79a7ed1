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

    /// A TLS connection says goodbye (close_notify) before its socket is closed, never after: a
    /// socket's number is reused at once by the next connection the process opens, so a
    /// goodbye written after the close lands in a stranger's connection. It did: in CI, a
    /// PostgreSQL server refused a fresh connection of the test process with "received
    /// unencrypted data after SSL request", the bytes of a TLS alert from a Redis connection freed
    /// on another thread. The peer here is a TLS server that answers PING and then tells whether
    /// the stream ended with close_notify or with a bare end of file (what the closed-socket
    /// write leaves).
    @Test func aClosedConnectionSaysGoodbyeBeforeItsSocketCloses() throws {
        let certs = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-relay-goodbye-certs-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let (made, output) = try OperationsTests.run([OperationsTests.repository.appendingPathComponent("scripts/test-certs.sh").path, certs])
        try #require(made == 0, "\(output)")
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = ["-c", Self.goodbyeServer, "\(certs)/server.crt", "\(certs)/server.key", String(freePort())]
        let lines = Pipe()
        server.standardOutput = lines
        try server.run()
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        let reader = lines.fileHandleForReading
        func line() -> String {
            var bytes: [UInt8] = []
            while let byte = try? reader.read(upToCount: 1), let first = byte.first, first != 10 { bytes.append(first) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let port = try #require(Int(line().replacingOccurrences(of: "port ", with: "")), "the TLS server started")
        var connection: RedisConnection? = try RedisConnection(
            endpoint: RedisEndpoint(address: .tcp(host: "localhost", port: port), tls: true), timeout: 5, tls: RedisTLS(caFile: "\(certs)/ca.crt"))
        #expect(connection != nil)
        connection = nil
        #expect(line() == "close_notify", "the stream ended without a TLS goodbye")
    }

    /// Serves one TLS connection: answers PING with PONG, then prints how the stream ended.
    static let goodbyeServer = """
        import socket, ssl, sys
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # a bare end of file is an error, not an end
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(sys.argv[3])))
        listener.listen(1)
        print("port", listener.getsockname()[1], flush=True)
        raw, _ = listener.accept()
        stream = context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        request = b""
        while b"PING" not in request.upper():
            request += stream.recv(1024)
        stream.sendall(b"+PONG\\r\\n")
        try:
            while stream.recv(1024):
                pass
            print("close_notify", flush=True)
        except (ssl.SSLError, ConnectionResetError):
            print("eof", flush=True)
        """
}
