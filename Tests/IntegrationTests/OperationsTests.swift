import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// What an operator relies on: the systemd unit, the notify protocol, configuration from the
/// environment, JSON logs, `status`, cleanup, and secrets kept out of every output.
@Suite(.serialized) struct OperationsTests {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Runs a command to completion; returns its exit status and combined output.
    static func run(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test func theUnitVerifiesAndIsHardened() throws {
        // verify checks that ExecStart exists, so the copy points at the binary just built.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let unit = try String(contentsOf: Self.repository.appendingPathComponent("deploy/outbox-relay@.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/bin/outbox-relay run"))
        for line in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
            "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "SystemCallFilter=@system-service", "MemoryMax=", "EnvironmentFile=/etc/outbox-relay/%i.env"]
        {
            #expect(unit.contains(line), "the unit sets \(line)")
        }
        let copy = folder.appendingPathComponent("outbox-relay@.service")
        try unit.replacingOccurrences(of: "/usr/bin/outbox-relay", with: RelayProcess.executable.path).write(to: copy, atomically: true, encoding: .utf8)
        let (status, output) = try Self.run(["systemd-analyze", "verify", folder.appendingPathComponent("outbox-relay@default.service").path])
        #expect(status == 0 && output.isEmpty, "systemd-analyze verify: \(output)")
        let (security, report) = try Self.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", copy.path])
        #expect(security == 0, "\(report.suffix(400))")
        #expect(report.range(of: #"exposure level for outbox-relay@\S*: [01]\.\d"#, options: .regularExpression) != nil, "exposure under 2.0: \(report.suffix(200))")
    }

    @Test func speaksSystemdsNotifyProtocol() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let notify = try NotifySocket()
        let relay = try RelayProcess(
            ["run"],
            environment: [
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000", "DATABASE_URL": outbox.servers.databaseURL,
                "REDIS_URL": outbox.redisURL, "OUTBOX_RELAY_TABLE": outbox.table.description, "OUTBOX_RELAY_SLEEP_ON_EMPTY": "0.05",
            ])
        var received: [String] = []
        #expect(notify.waitFor("READY=1", seconds: 20, into: &received), "\(relay.log)")
        try outbox.insert([(.named("n"), RelayIntegrationTests.payload("n", 1))])
        try waitUntil("row relayed") { try outbox.pendingCount() == 0 }
        #expect(notify.waitFor("WATCHDOG=1", seconds: 2, into: &received))
        let pings = received.count
        #expect(notify.waitFor("WATCHDOG=1", seconds: 2, into: &received), "the watchdog keeps being pinged")
        #expect(received.count > pings)
        #expect(received.contains { $0.hasPrefix("STATUS=relaying: 1 jobs since start") }, "\(received)")
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(notify.waitFor("STOPPING=1", seconds: 2, into: &received))
    }

    @Test func readsEveryFlagFromTheEnvironmentAndLogsJSON() throws {
        let (status, log) = try RelayProcess.run(["--database-url", "postgresql://x/y"], environment: ["OUTBOX_RELAY_BATCH_SIZE": "0", "REDIS_URL": "redis://h:1/0"])
        #expect(status == 64)
        #expect(log.hasPrefix("outbox-relay: --batch-size must be from 1 to 10000, got 0\n"))

        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("env"), RelayIntegrationTests.payload("env", 1))])
        let relay = try RelayProcess([], environment: [
            "OUTBOX_RELAY_DATABASE_URL": outbox.servers.databaseURL, "OUTBOX_RELAY_REDIS_URL": outbox.redisURL,
            "OUTBOX_RELAY_TABLE": outbox.table.description, "OUTBOX_RELAY_LOG_FORMAT": "json", "OUTBOX_RELAY_SPLIT_KEYS": "env",
        ])
        try waitUntil("row relayed") { try outbox.pendingCount() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        let lines = relay.log.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.allSatisfy { $0 != nil }, "every line is a JSON object: \(relay.log)")
        let relayed = lines.compactMap { $0 }.first { $0["message"] as? String == "relayed jobs" }
        #expect(relayed?["outbox.split_key"] as? String == "env")
        #expect(relayed?["outbox.jobs"] as? String == "1")
        #expect(relayed?["level"] as? String == "info")
    }

    @Test func statusReportsPendingAgeHoldersAndDeadLetters() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("old"), RelayIntegrationTests.payload("old", 1))], createdAt: "2020-01-01 00:00:00")
        try outbox.insert([(.named("new"), RelayIntegrationTests.payload("new", 2)), (.named("new"), RelayIntegrationTests.payload("new", 3))], createdAt: nil)
        try outbox.postgres.query(SQLStatement(
            "INSERT INTO \(outbox.queries.deadLetterTable.quoted) (id, split_key, format, payload, created_at, error) VALUES (999, 'new', 'sidekiq5', 'x', now(), 'bad')"))
        let holder = try PostgresConnection(connectionString: outbox.servers.databaseURL, settings: [("application_name", "holder-for-test")])
        _ = try holder.query(outbox.queries.tryLease(LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named("new"))))

        let common = ["status", "--database-url", outbox.servers.databaseURL, "--table", outbox.table.description]
        let (status, text) = try RelayProcess.run(common + ["--json"])
        #expect(status == 0, "\(text)")
        let report = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        let keys = report["keys"] as! [[String: Any]]
        #expect(keys.map { $0["split_key"] as? String } == ["new", "old"])
        #expect(keys.map { $0["pending"] as? Int } == [2, 1])
        #expect(keys.map { $0["dead_letters"] as? Int } == [1, 0])
        #expect((keys[1]["oldest_pending_age_seconds"] as? Double ?? 0) > 86400 * 365)
        #expect((keys[0]["lease_holder"] as? String)?.hasPrefix("holder-for-test (pid \(holder.backendPID)") == true)
        #expect(keys[1]["lease_holder"] is NSNull)

        let (late, message) = try RelayProcess.run(common + ["--max-age", "P1D"])
        #expect(late == 2)
        #expect(message.contains("split key old has a pending row"))
        let (fine, _) = try RelayProcess.run(common + ["--max-age", "P100Y"])
        #expect(fine == 0)
    }

    @Test func cleanupDeletesOnlyOldEnqueuedRows() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let ids = try outbox.insert((0..<2500).map { (.named("c"), RelayIntegrationTests.payload("c", $0)) })
        try outbox.postgres.query(SQLStatement(
            "UPDATE \(outbox.table.quoted) SET enqueued_at = (now() AT TIME ZONE 'utc') - interval '8 days' WHERE id <= $1", [String(ids[2299])]))
        try outbox.postgres.query(SQLStatement(
            "UPDATE \(outbox.table.quoted) SET enqueued_at = (now() AT TIME ZONE 'utc') - interval '1 day' WHERE id > $1 AND id <= $2",
            [String(ids[2299]), String(ids[2399])]))
        // The last 100 rows stay pending, but their key is not served, so they remain pending.
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--split-keys", "elsewhere", "--cleanup", "P7D", "--cleanup-limit", "all",
        ])
        try waitUntil("old rows deleted") { try outbox.postgres.query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted)")).int64(0, 0) == 200 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(try outbox.pendingCount() == 100, "pending rows are never deleted")
        #expect(try outbox.enqueuedIDs() == Array(ids[2300..<2400]), "rows enqueued a day ago stay")
        #expect(relay.log.contains("cleaned up enqueued rows outbox.older_than=P7D outbox.rows=2300"))
    }

    @Test func passwordsNeverAppearInOutput() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let secret = "S3cr3t-Pa55"
        let database = outbox.servers.databaseURL.replacingOccurrences(of: "postgres@", with: "postgres:\(secret)@")
        let redis = "redis://:\(secret)@127.0.0.1:\(outbox.servers.redisPort)/\(outbox.redisDatabase)"
        let relay = try RelayProcess(["--database-url", database, "--redis-url", redis, "--table", outbox.table.description, "--log-level", "debug"])
        relay.waitForLog("refused AUTH", seconds: 10)
        relay.signal(SIGTERM)
        _ = relay.waitForExit(seconds: 10)
        #expect(relay.log.contains("refused AUTH"), "Redis without a password refuses AUTH: \(relay.log)")
        #expect(!relay.log.contains(secret))
        let outputs = [
            try RelayProcess.run(["--database-url", database + "&nosuch=1", "--redis-url", redis]).1,
            try RelayProcess.run(["--database-url", database, "--redis-url", "redis://:\(secret)@host:notaport/0"]).1,
            try RelayProcess.run(["status", "--database-url", database.replacingOccurrences(of: "127.0.0.1", with: "127.0.0.1:1"), "--table", "t"]).1,
            try RelayProcess.run(["status", "--database-url", "host=127.0.0.1 port=1 password=\(secret) connect_timeout=2", "--table", "t"]).1,
        ]
        for output in outputs {
            #expect(!output.isEmpty)
            #expect(!output.contains(secret), "\(output)")
        }
    }
}

/// `--metrics-listen`: Prometheus exposition that promtool accepts, and health endpoints.
@Suite(.serialized) struct MetricsTests {
    static func get(_ port: Int, _ path: String) throws -> (Int, String) {
        let (status, output) = try OperationsTests.run(["curl", "-s", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
        guard status == 0, let code = output.split(separator: "\n").last.flatMap({ Int($0) }) else { return (0, output) }
        return (code, String(output.dropLast(String(code).count + 1)))
    }

    @Test func servesMetricsThatPromtoolAcceptsAndHealth() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let redis = try PrivateRedis()
        defer { redis.destroy() }
        try outbox.insert((0..<30).map { (.named("m"), RelayIntegrationTests.payload("m", $0)) } + [(.named("m"), "bad")], createdAt: nil)
        let port = freePort()
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", "redis://127.0.0.1:\(redis.port)/0", "--table", outbox.table.description,
            "--metrics-listen", "127.0.0.1:\(port)", "--split-keys", "m,idle", "--network-timeout", "1",
        ])
        defer { relay.signal(SIGKILL) }
        try waitUntil("rows relayed") { try outbox.pendingCount() == 0 }
        try waitUntil("metrics served", seconds: 10) { (try? Self.get(port, "/metrics").0) == 200 }
        let (_, text) = try Self.get(port, "/metrics")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(getpid()).txt")
        try text.write(to: file, atomically: true, encoding: .utf8)
        let (lint, problems) = try OperationsTests.run(["sh", "-c", "promtool check metrics < \(file.path)"])
        #expect(lint == 0, "promtool: \(problems)")
        for line in [
            #"outbox_relay_jobs_relayed_total{split_key="m"} 30"#, #"outbox_relay_jobs_dead_lettered_total{split_key="m"} 1"#,
            #"outbox_relay_pending_jobs{split_key="idle"} 0"#, #"outbox_relay_connection_errors_total{server="redis"} 0"#,
            #"outbox_relay_lease_acquisitions_total{split_key="m",result="acquired"}"#, "outbox_relay_batch_duration_seconds_count",
            "# HELP outbox_relay_oldest_pending_age_seconds",
        ] {
            #expect(text.contains(line), "the exposition has \(line)")
        }
        #expect(try Self.get(port, "/healthz").0 == 200)
        #expect(try Self.get(port, "/readyz").0 == 200)
        #expect(try Self.get(port, "/nothing").0 == 404)

        redis.stop()
        try waitUntil("not ready without Redis", seconds: 10) { try Self.get(port, "/readyz").0 == 503 }
        #expect(try Self.get(port, "/healthz").0 == 200, "the loop still goes round while it waits")
        let (_, after) = try Self.get(port, "/metrics")
        #expect(after.contains(#"outbox_relay_connection_errors_total{server="redis"} "#) && !after.contains(#"outbox_relay_connection_errors_total{server="redis"} 0"#))
    }
}
