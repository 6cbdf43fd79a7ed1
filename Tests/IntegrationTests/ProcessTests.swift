import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// The executable as an operator or systemd runs it.
@Suite(.serialized) struct ProcessTests {
    @Test(arguments: [
        (["--batch-size", "0"], "--batch-size must be from 1 to 10000, got 0"),
        (["--batch-size", "10001"], "--batch-size must be from 1 to 10000, got 10001"),
        (["--log-level", "loud"], "--log-level must be fatal, error, warn, info or debug, got 'loud'"),
        (["--message-format", "json"], "--message-format must be sidekiq5, got 'json'"),
        (["--no-such-flag"], "Unknown option '--no-such-flag'"),
        (["--redis-url", "redis://:hunter2@localhost:99999/0"], "--redis-url: invalid Redis URL 'redis://:***@localhost:99999/0': port '99999' is not a number from 1 to 65535"),
        (["--database-url", "postgresql://u:hunter2@host:5432/db?sslmode=sometimes"], "--database-url: invalid database URL: invalid sslmode value: \"sometimes\""),
        (["--database-url", "postgresql://u:hunter2@host:5432/db?nosuch=1"], "--database-url: invalid database URL: invalid URI query parameter: \"nosuch\""),
        (["--table", "x; DROP TABLE y"], "--table: invalid table name 'x; DROP TABLE y': use letters, digits and '_' (optionally schema.table)"),
        (["--redis-url", "redis://:hunter2@mymaster/0", "--redis-sentinels", "10.0.0.1:26379,x:0"], "--redis-sentinels: Sentinel 'x:0': the port is not a number from 1 to 65535"),
        (["--redis-sentinel-password-file", "/nonexistent"], "--redis-sentinel-password-file needs --redis-sentinels"),
        (["--redis-wait-replicas", "101"], "--redis-wait-replicas must be from 0 to 100, got 101"),
        (["--redis-wait-timeout", "0"], "--redis-wait-timeout must be from 0.01 to 600 seconds, got 0.0"),
        (["--metrics-listen", "127.0.0.1:99999"], "--metrics-listen must be HOST:PORT (for example 127.0.0.1:9187 or [::1]:9187), got '127.0.0.1:99999'"),
        (["--metrics-listen", "127.0.0.1"], "--metrics-listen must be HOST:PORT (for example 127.0.0.1:9187 or [::1]:9187), got '127.0.0.1'"),
        (["--cleanup", "P99999999D"], "--cleanup: 'P99999999D' is longer than 1000 years, or none"),
    ])
    func refusesBadFlagsWithOneLineAndExitCode64(arguments: [String], message: String) throws {
        var all = ["--database-url", "postgresql://localhost/db", "--redis-url", "redis://localhost:6379/0"]
        all += arguments
        let (status, log) = try RelayProcess.run(all)
        #expect(status == 64)
        #expect(log == "outbox-relay: \(message)\nSee 'outbox-relay --help'.\n")
        #expect(!log.contains("hunter2"))
    }

    @Test func refusesAMissingDatabaseURL() throws {
        let (status, log) = try RelayProcess.run(["--redis-url", "redis://localhost:6379/0"])
        #expect(status == 64)
        #expect(log.hasPrefix("outbox-relay: --database-url is missing (or set DATABASE_URL)\n"))
    }

    @Test func printsVersionAndHelp() throws {
        let (status, log) = try RelayProcess.run(["--version"])
        #expect(status == 0)
        #expect(log == "0.1.0\n")
        let (helpStatus, help) = try RelayProcess.run(["run", "--help"])
        #expect(helpStatus == 0)
        for flag in ["--database-url", "--redis-url", "--split-keys", "--batch-size", "--sleep-on-empty", "--log-level", "--message-format"] {
            #expect(help.contains(flag), "help mentions \(flag)")
        }
    }

    @Test func readsURLsFromTheEnvironment() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let notify = try NotifySocket()
        let relay = try RelayProcess(
            ["--sleep-on-empty", "0.05", "--table", outbox.table.description],
            environment: ["DATABASE_URL": outbox.servers.databaseURL, "REDIS_URL": outbox.redisURL, "NOTIFY_SOCKET": notify.path])
        var received: [String] = []
        #expect(notify.waitFor("READY=1", seconds: 20, into: &received), "READY=1 once both servers answered: \(received) \(relay.log)")
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(notify.waitFor("STOPPING=1", seconds: 2, into: &received), "STOPPING=1 on shutdown: \(received)")
    }

    /// SIGTERM in the middle of a backlog: exit 0 within seconds, no lease left behind, and every
    /// row either pushed and marked or neither.
    @Test func stopsCleanlyOnSIGTERMMidBacklog() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let rows = (0..<20000).map { (SplitKey.named("bulk"), RelayIntegrationTests.payload("bulk", $0)) }
        let ids = try outbox.insert(rows)
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--batch-size", "10", "--log-level", "debug",
            "--table", outbox.table.description,
        ])
        try waitUntil("some rows relayed") { try outbox.queue("bulk").count >= 100 }
        relay.signal(SIGTERM)
        let started = Date()
        #expect(relay.waitForExit(seconds: 10) == 0, "exit 0 on SIGTERM: \(relay.log.suffix(2000))")
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(relay.log.contains("info stopped"))

        let lease = LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named("bulk"))
        let locks = try outbox.postgres.query(SQLStatement(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = $1::int8",
            [String(lease.value)]))
        #expect(locks.int64(0, 0) == 0, "no lease is left behind")
        let marked = try outbox.enqueuedIDs()
        let inRedis = try outbox.queue("bulk")
        #expect(marked.count < ids.count, "stopped before the backlog was done")
        #expect(inRedis == (0..<marked.count).map { RelayIntegrationTests.pushed("bulk", $0) }, "exactly the marked rows are in Redis, in order")
        #expect(marked == Array(ids.prefix(marked.count)))
    }
}
