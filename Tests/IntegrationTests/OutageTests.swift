import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Servers going away while the relay runs: nothing is marked that Redis did not take, nothing is
/// lost, and the relay carries on once the server is back.
@Suite(.serialized) struct OutageTests {
    @Test func keepsRowsPendingWhileRedisIsDownAndDeliversThemWhenItReturns() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let redis = try PrivateRedis()
        defer { redis.destroy() }
        var configuration = outbox.configuration()
        configuration.redis = RedisEndpoint(address: .tcp(host: "127.0.0.1", port: redis.port))
        let relay = RelayRunner(configuration)
        try outbox.insert([(.named("q"), RelayIntegrationTests.payload("q", 0))])
        try waitUntil("first row relayed") { try outbox.pendingCount() == 0 }

        redis.stop()
        try outbox.insert((1...100).map { (.named("q"), RelayIntegrationTests.payload("q", $0)) })
        try waitUntil("the relay finds Redis gone") { relay.logs.lines.contains { $0.contains(" error ") && $0.contains("Redis") } }
        #expect(try outbox.pendingCount() == 100, "nothing is marked while Redis is down")

        try redis.start()
        try waitUntil("backlog relayed after Redis returned") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        let client = try RedisConnection(endpoint: configuration.redis, timeout: 5)
        guard case .array(let items) = try client.send([RedisCommand("LRANGE", "queue:q", "0", "-1")])[0] else {
            Issue.record("queue:q is not a list")
            return
        }
        #expect(items.reversed().map { $0.text ?? "" } == (1...100).map { RelayIntegrationTests.pushed("q", $0) })
        let errors = relay.logs.lines.filter { $0.contains(" error ") }
        #expect(!errors.isEmpty && errors.allSatisfy { $0.contains("Redis") }, "the outage is logged: \(errors)")
        #expect(relay.logs.lines.contains { $0.contains("relaying again") })
    }

    @Test func reconnectsWhenPostgreSQLDropsTheConnection() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let name = "outbox-test-\(getpid())-\(outbox.table.name)"
        var configuration = outbox.configuration(batchSize: 10)
        configuration.databaseURL = outbox.servers.databaseURL + "?application_name=\(name)"
        let relay = RelayRunner(configuration)
        let ids = try outbox.insert((0..<3000).map { (.named("q"), RelayIntegrationTests.payload("q", $0)) })
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.1)
            try outbox.postgres.query(SQLStatement(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [name]))
        }
        try waitUntil("backlog relayed despite the dropped connections") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.enqueuedIDs() == ids)
        // A batch pushed but not marked when the connection died is marked, not pushed again.
        let jobs = try outbox.queue("q")
        #expect(jobs == (0..<3000).map { RelayIntegrationTests.pushed("q", $0) }, "every job once, in order")
        #expect(relay.logs.lines.contains { $0.contains(" error ") && $0.contains("PostgreSQL") })
    }
}

/// A Redis server of the test's own, so it can be stopped and started again on the same port.
final class PrivateRedis {
    let port: Int
    let extraArguments: [String]
    /// How the test itself connects (with the password, when one is set).
    let adminEndpoint: RedisEndpoint
    private var process: Process?

    let tls: RedisTLS

    /// `PORT` in `extraArguments` stands for the chosen port (for `--tls-port`); with `tls`, the
    /// test itself connects over TLS with those certificates.
    init(extraArguments: [String] = [], password: String? = nil, tls: RedisTLS? = nil, port requested: Int? = nil) throws {
        let chosen = requested ?? freePort()
        port = chosen
        self.extraArguments = extraArguments.map { $0 == "PORT" ? String(chosen) : $0 }
        self.tls = tls ?? RedisTLS()
        adminEndpoint = RedisEndpoint(address: .tcp(host: tls == nil ? "127.0.0.1" : "localhost", port: port), tls: tls != nil, password: password)
        try start()
    }

    /// Its own data folder, so an append-only file survives a restart but not into another test.
    var directory: String { "/tmp/outbox-relay-redis-\(getpid())-\(port)" }

    /// `extraArguments`: for this start only (after those the server was made with).
    func start(extraArguments more: [String] = []) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory, "--logfile", "\(directory)/redis.log",
        ] + extraArguments + more
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitUntil("private Redis up", seconds: 10) {
            (try? RedisConnection(endpoint: adminEndpoint, timeout: 1, tls: tls)) != nil
        }
    }

    /// The last `lines` lines of the server's log (kept across restarts, until ``destroy()``).
    func logTail(_ lines: Int = 60) -> String {
        let text = (try? String(contentsOfFile: "\(directory)/redis.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Stops the server and removes its data folder.
    func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func stop() {
        guard let process, process.isRunning else { return }
        // SIGKILL: the test process's blocked signals are inherited, so SIGTERM may never arrive.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }
}
