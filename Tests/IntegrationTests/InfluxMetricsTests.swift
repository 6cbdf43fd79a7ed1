import Foundation
import Logging
import OutboxRelay
import OutboxRelayDaemon
import OutboxRelayIO
import Testing

/// `--metrics-url`: res_outbox's InfluxDB series, fields and tags, written to a real InfluxDB 1.x
/// over HTTP (with a user and password) and over UDP, read back with InfluxQL; and the relay never
/// waits for InfluxDB: points are buffered, the oldest dropped, while it is away.
@Suite(.serialized) struct InfluxMetricsTests {
    static let queueSeries = "ruby_event_store.outbox.queue"
    static let lockSeries = "ruby_event_store.outbox.lock"

    func relay(_ outbox: TestOutbox, metricsURL: String, extra: [String] = []) throws -> RelayProcess {
        try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--sleep-on-empty", "0.05", "--metrics-url", metricsURL,
        ] + extra)
    }

    /// Per split key: the sums of `enqueued` and `failed`, keyed `split_key|format`.
    func sums(_ influx: InfluxServer, database: String) throws -> [String: [Int]] {
        let series = try influx.query(
            #"SELECT sum("enqueued"), sum("failed") FROM "\#(Self.queueSeries)" GROUP BY "split_key", "format""#, database: database)
        var result: [String: [Int]] = [:]
        for entry in series {
            let tags = entry["tags"] as? [String: String] ?? [:]
            let row = (entry["values"] as? [[Any]])?.first ?? []
            // A field no point of the series has sums to null: -1 here.
            let values = [1, 2].map { row.count > $0 ? (row[$0] as? NSNumber)?.intValue ?? -1 : -1 }
            result["\(tags["split_key"] ?? "")|\(tags["format"] ?? "")"] = values
        }
        return result
    }

    @Test func writesResOutboxSeriesOverHTTPWithAUserAndPassword() throws {
        let influx = try InfluxServer()
        defer { influx.stop() }
        try influx.start(databases: ["outbox"])
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert(
            [(.named("a"), RelayIntegrationTests.payload("a", 0)), (.named("a"), RelayIntegrationTests.payload("a", 1)), (.named("a"), "not json"),
             (.named("a"), RelayIntegrationTests.payload("a", 3)), (.named("b"), RelayIntegrationTests.payload("b", 0)),
             (.named("b"), RelayIntegrationTests.payload("b", 1)), (.named("c"), RelayIntegrationTests.payload("c", 0))])
        // Another instance holds key c: res_outbox reports that as a lock point, obtain/taken.
        let holder = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        let lease = LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named("c"))
        _ = try holder.query(SQLStatement("SELECT pg_advisory_lock($1::int8)", [String(lease.value)]))

        // Prometheus as well: both backends get the relay's metrics.
        let prometheusPort = freePort(excluding: [influx.httpPort, influx.udpPort])
        let relay = try relay(outbox, metricsURL: "\(influx.url)/outbox", extra: ["--lock", "-l", "--metrics-listen", "127.0.0.1:\(prometheusPort)"])
        try waitUntil("points of keys a and b in InfluxDB") {
            let totals = try sums(influx, database: "outbox")
            return totals["a|sidekiq5"] == [3, 1] && totals["b|sidekiq5"] == [2, 0]
        }
        try waitUntil("the remaining point of key c") {
            try !influx.query(#"SELECT last("remaining") FROM "\#(Self.queueSeries)" WHERE "split_key" = 'c'"#, database: "outbox").isEmpty
        }
        let (_, exposition) = try MetricsTests.get(prometheusPort, "/metrics")
        #expect(exposition.contains(#"outbox_relay_jobs_relayed_total{split_key="a"} 3"#), "\(exposition)")
        #expect(exposition.contains(#"outbox_relay_jobs_dead_lettered_total{split_key="a"} 1"#))
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)

        let totals = try sums(influx, database: "outbox")
        #expect(totals["a|sidekiq5"] == [3, 1], "3 enqueued and 1 failed (dead-lettered) on key a")
        #expect(totals["b|sidekiq5"] == [2, 0])
        #expect(totals["c|sidekiq5"] == [0, 0], "key c only has remaining points")
        let remaining = try influx.query(
            #"SELECT last("remaining") FROM "\#(Self.queueSeries)" GROUP BY "split_key""#, database: "outbox")
        #expect(remaining.count == 1, "a and b had nothing pending when the relay counted: \(remaining)")
        #expect((remaining.first?["tags"] as? [String: String]) == ["split_key": "c"])
        #expect(((remaining.first?["values"] as? [[Any]])?.first?[1] as? NSNumber)?.intValue == 1)

        let fields = try influx.query(#"SHOW FIELD KEYS FROM "\#(Self.queueSeries)""#, database: "outbox")
        #expect((fields.first?["values"] as? [[String]]) == [["enqueued", "integer"], ["failed", "integer"], ["remaining", "integer"]])
        let tags = try influx.query(#"SHOW TAG KEYS FROM "\#(Self.queueSeries)""#, database: "outbox")
        #expect((tags.first?["values"] as? [[String]]) == [["format"], ["split_key"]])

        let locks = try influx.query(#"SELECT "operation", "result", "value" FROM "\#(Self.lockSeries)" LIMIT 1"#, database: "outbox")
        let lock = try #require((locks.first?["values"] as? [[Any]])?.first)
        #expect(lock[1] as? String == "obtain")
        #expect(lock[2] as? String == "taken")
        #expect((lock[3] as? NSNumber)?.intValue == 1)
        let lockFields = try influx.query(#"SHOW FIELD KEYS FROM "\#(Self.lockSeries)""#, database: "outbox")
        #expect((lockFields.first?["values"] as? [[String]]) == [["value", "integer"]])

        #expect(relay.log.contains("sending metrics to InfluxDB outbox.metrics_url=http://\(InfluxServer.user):***@127.0.0.1:\(influx.httpPort)/outbox"), "\(relay.log)")
        #expect(!relay.log.contains(InfluxServer.password))
    }

    @Test func writesOverUDP() throws {
        let influx = try InfluxServer()
        defer { influx.stop() }
        try influx.start(databases: [InfluxServer.udpDatabase])
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert((0..<4).map { (.named("u"), RelayIntegrationTests.payload("u", $0)) })
        let relay = try relay(outbox, metricsURL: "udp://127.0.0.1:\(influx.udpPort)")
        try waitUntil("the UDP points in InfluxDB") { try sums(influx, database: InfluxServer.udpDatabase)["u|sidekiq5"] == [4, 0] }
        #expect(try sums(influx, database: InfluxServer.udpDatabase) == ["u|sidekiq5": [4, 0]])
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(try outbox.pendingCount() == 0)
    }

    /// InfluxDB down: the relay relays as ever, logs the problem once, and writes the buffered
    /// points when InfluxDB is back.
    @Test func relaysWhileInfluxDBIsAwayAndWritesThePointsLater() throws {
        let influx = try InfluxServer()
        defer { influx.stop() }
        try influx.start(databases: ["outbox"])
        influx.halt()
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let relay = try relay(outbox, metricsURL: "\(influx.url)/outbox")
        try outbox.insert((0..<5).map { (.named("late"), RelayIntegrationTests.payload("late", $0)) })
        try waitUntil("rows relayed while InfluxDB is away") { try outbox.pendingCount() == 0 }
        #expect(try outbox.queue("late").count == 5)
        let problem = "cannot write to InfluxDB at http://\(InfluxServer.user):***@127.0.0.1:\(influx.httpPort)/outbox"
        #expect(relay.waitForLog(problem, seconds: 10), "\(relay.log)")

        try influx.start()
        try waitUntil("the buffered points in InfluxDB", seconds: 60) { try sums(influx, database: "outbox")["late|sidekiq5"] == [5, 0] }
        #expect(relay.waitForLog("writing metrics to InfluxDB again", seconds: 10))
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(relay.log.components(separatedBy: problem).count == 2, "the problem is logged once: \(relay.log)")
        #expect(!relay.log.contains(InfluxServer.password))
    }

    /// An InfluxDB that takes the connection and never answers: each write waits for its timeout
    /// (5 s) on the metrics thread, and the relay goes on at full speed meanwhile.
    @Test func relaysAtFullSpeedWhileInfluxDBHangs() throws {
        let port = freePort()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0 && listen(listener, 64) == 0, "a listener that never accepts")
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let relay = try relay(outbox, metricsURL: "http://u:hung-pw@127.0.0.1:\(port)/outbox")
        #expect(relay.waitForLog("info ready", seconds: 20), "\(relay.log)")
        // A first round of points is now stuck in a write that waits for InfluxDB's answer.
        try outbox.insert((0..<5).map { (.named("h\($0)"), RelayIntegrationTests.payload("h\($0)", $0)) }, createdAt: nil)
        try waitUntil("the first rows relayed") { try outbox.pendingCount() == 0 }
        try waitUntil("the metrics thread connected to the hung InfluxDB", seconds: 10) {
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            return poll(&ready, 1, 0) == 1
        }
        let started = Date()
        try outbox.insert((0..<200).map { (.named("h\($0 % 10)"), RelayIntegrationTests.payload("h\($0 % 10)", $0)) }, createdAt: nil)
        try waitUntil("200 more rows relayed well within InfluxDB's 5 s timeout", seconds: 3) { try outbox.pendingCount() == 0 }
        #expect(Date().timeIntervalSince(started) < 3)
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(!relay.log.contains("hung-pw"))
    }

    /// A full buffer drops its oldest points and counts them; the newest reach InfluxDB.
    @Test func dropsTheOldestPointsWhenTheBufferIsFull() throws {
        let influx = try InfluxServer()
        defer { influx.stop() }
        try influx.start(databases: ["outbox"])
        influx.halt()
        let logs = LogCapture()
        let reporter = InfluxReporter(
            url: try InfluxURL("\(influx.url)/outbox"), logger: Logger(label: "test") { _ in logs.handler() }, capacity: 3,
            flushInterval: 0.05)
        reporter.start()
        defer { reporter.stop() }
        for n in 1...5 {
            reporter.record(ResOutboxPoints.queue(format: "sidekiq5", splitKey: .named("k"), enqueued: n, remaining: nil, nanoseconds: Int64(n) * 1_000_000_000))
        }
        try waitUntil("two points dropped") { reporter.dropped == 2 }
        try influx.start()
        try waitUntil("the three newest points in InfluxDB") {
            try influx.query(#"SELECT "enqueued" FROM "\#(Self.queueSeries)""#, database: "outbox").first.map {
                ($0["values"] as? [[Any]] ?? []).map { ($0[1] as? NSNumber)?.intValue ?? -1 }
            } == [3, 4, 5]
        }
        #expect(reporter.dropped == 2)
    }
}

/// res_outbox's command line flags that the relay accepts for drop-in unit files.
@Suite(.serialized) struct ResOutboxFlagTests {
    @Test(arguments: [
        (["--metrics-url", "ftp://u:hunter2@host/db"], "--metrics-url: invalid metrics URL 'ftp://u:***@host/db': unknown scheme 'ftp', expected http, https or udp"),
        (["--metrics-url", "http://u:hunter2@host:8086"], "--metrics-url: invalid metrics URL 'http://u:***@host:8086': the database is missing, as in http://host:8086/database"),
        (["--metrics-url=http://u:hunter2@host:99999/db"], "--metrics-url: invalid metrics URL 'http://u:***@host:99999/db': port '99999' is not a number from 1 to 65535"),
        (["--metrics-url", "influx.example:8086"], "--metrics-url: invalid metrics URL 'influx.example:8086': expected http(s)://host:port/database (a user and password may come before the host) or udp://host:port"),
    ])
    func refusesABadMetricsURLWithOneLineAndExitCode64(arguments: [String], message: String) throws {
        let (status, log) = try RelayProcess.run(["--database-url", "postgresql://localhost/db", "--redis-url", "redis://localhost:6379/0"] + arguments)
        #expect(status == 64)
        #expect(log == "outbox-relay: \(message)\nSee 'outbox-relay --help'.\n")
        #expect(!log.contains("hunter2"))
    }

    @Test func refusesABadMetricsURLFromTheEnvironmentWithoutShowingItsPassword() throws {
        let (status, log) = try RelayProcess.run(
            ["--database-url", "postgresql://localhost/db", "--redis-url", "redis://localhost:6379/0"],
            environment: ["OUTBOX_RELAY_METRICS_URL": "http://u:hunter2@host:8086"])
        #expect(status == 64)
        #expect(log.hasPrefix("outbox-relay: --metrics-url: invalid metrics URL 'http://u:***@host:8086'"))
        #expect(!log.contains("hunter2"))
    }

    /// An environment file that leaves OUTBOX_RELAY_METRICS_URL empty means no InfluxDB.
    @Test func takesAnEmptyMetricsURLFromTheEnvironmentAsOff() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("q"), RelayIntegrationTests.payload("q", 0))])
        let relay = try RelayProcess(
            ["--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description, "--sleep-on-empty", "0.05"],
            environment: ["OUTBOX_RELAY_METRICS_URL": ""])
        try waitUntil("the row relayed", seconds: 20) { try outbox.pendingCount() == 0 || relay.waitForExit(seconds: 0) != nil }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(!relay.log.contains("InfluxDB"))
    }

    /// Every flag res_outbox's CLI defines, as a unit file would pass them (the table, which
    /// res_outbox cannot choose, comes from the environment so the test has its own).
    @Test func startsWithAResOutboxCommandLineUnchanged() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("q"), RelayIntegrationTests.payload("q", 0)), (.named("other"), RelayIntegrationTests.payload("other", 0))])
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--log-level", "info", "--message-format", "sidekiq5",
            "--split-keys=q", "--batch-size", "100", "--metrics-url", "udp://127.0.0.1:\(freePort())", "-l", "--cleanup", "none",
            "--cleanup-limit", "all", "--sleep-on-empty", "0.05",
        ], environment: ["OUTBOX_RELAY_TABLE": outbox.table.description])
        try waitUntil("the row of key q relayed") { try outbox.queue("q").count == 1 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(try outbox.queue("other").isEmpty, "only the split keys given")
        let (status, version) = try RelayProcess.run(["--version"])
        #expect(status == 0 && version == "0.1.0\n")
    }

    @Test(arguments: [["--lock"], ["-l"], ["--no-lock"]])
    func acceptsResOutboxsLockFlags(flags: [String]) throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("q"), RelayIntegrationTests.payload("q", 0))])
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--sleep-on-empty", "0.05", "--log-level", "info",
        ] + flags)
        try waitUntil("the row relayed") { try outbox.pendingCount() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        let notice = "--no-lock is accepted for res_outbox's unit files, but outbox-relay always leases each split key"
        #expect(relay.log.components(separatedBy: notice).count == (flags == ["--no-lock"] ? 2 : 1), "\(relay.log)")
    }
}
