import Foundation
import OutboxRelay
import OutboxRelayIO

/// Issue 16's latency case: pgbench commits one ~200-byte job per transaction on one connection
/// at a Poisson-distributed rate (`-R`), each job carrying its insert time (PostgreSQL's
/// `clock_timestamp()`), while the relay (default flags plus `--batch-size 1000`, woken by the
/// NOTIFY trigger) moves them to Redis and a consumer thread BRPOPs them. Latency is the
/// consumer's wall-clock arrival time minus the insert time; both clocks are this machine's
/// CLOCK_REALTIME.
struct PoissonRun {
    let servers: BenchServers
    let rate: Int
    let seconds: Int
    /// 1, 2, 3: names the run's queue, and its files in `results`.
    let index: Int
    /// Where the relay's log and each job's latency (CSV) are kept for reading outliers.
    let results: String
    let goalP99: Double

    func run() throws -> LatencyRun.Result {
        let table = "bench_poisson"
        let queue = "poisson\(index)"
        _ = try servers.createTable(table, rows: 0, payloadBytes: 200, keys: 1, notify: true)
        try servers.flushRedis()
        let relay = try servers.startRelay(table: table, extra: ["--batch-size", "1000"])
        defer {
            try? FileManager.default.removeItem(atPath: "\(results)/poisson-\(index)-relay.log")
            try? FileManager.default.copyItem(atPath: relay.logPath, toPath: "\(results)/poisson-\(index)-relay.log")
            relay.stop()
        }
        try relay.waitUntilReady()

        // One INSERT per transaction; the JSON is built in SQL so that its first arg is the insert
        // time. pgbench reads ':word' as a variable, so no ':' is followed by a letter.
        let script = "/tmp/outbox-relay-bench-\(getpid())-poisson.sql"
        try """
            INSERT INTO \(table) (split_key, format, payload, created_at) VALUES ('k0', 'sidekiq5', convert_to('{"class":"BenchJob","queue":"\(queue)","args":[' || CAST(extract(epoch FROM clock_timestamp()) AS text) || ',"' || repeat('x', 86) || '"],"jid":"' || substr(md5(CAST(random() AS text)), 1, 24) || '","retry": true}', 'UTF8'), now() AT TIME ZONE 'utc');

            """.write(toFile: script, atomically: true, encoding: .utf8)
        defer { unlink(script) }

        let consumer = PoissonConsumer(servers: servers, queue: "queue:\(queue)")
        try consumer.start()
        defer { consumer.stop() }

        let pgbench = Process()
        pgbench.executableURL = URL(fileURLWithPath: "/usr/bin/pgbench")
        pgbench.arguments = ["-n", "-c", "1", "-R", String(rate), "-T", String(seconds), "-f", script, servers.databaseURL]
        let output = Pipe()
        pgbench.standardOutput = output
        pgbench.standardError = output
        try pgbench.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        pgbench.waitUntilExit()
        guard pgbench.terminationStatus == 0 else { throw BenchError("pgbench failed (\(pgbench.terminationStatus)): \(printed)") }

        let postgres = try servers.postgres()
        guard let rows = try postgres.query(SQLStatement("SELECT count(*) FROM \(table)")).text(0, 0).flatMap(Int.init), rows > 0 else {
            throw BenchError("pgbench inserted no rows: \(printed)")
        }
        let deadline = Date(timeIntervalSinceNow: 10)
        while consumer.count < rows && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        consumer.stop()
        let arrivals = consumer.latencies
        guard arrivals.count == rows else { throw BenchError("poisson run \(index): \(arrivals.count) of \(rows) jobs arrived") }
        guard consumer.unreadable == 0 else { throw BenchError("poisson run \(index): \(consumer.unreadable) jobs without an insert time") }
        let left = try servers.countJobs(queues: ["queue:\(queue)"])
        let pending = try postgres.query(SQLStatement("SELECT count(*) FROM \(table) WHERE enqueued_at IS NULL")).text(0, 0) ?? "?"
        guard left == 0, pending == "0" else { throw BenchError("poisson run \(index): \(left) jobs left in Redis, \(pending) rows pending") }
        // Whether autovacuum or autoanalyze ran on the table during the run, and when: they
        // compete for the 2 cores and are one suspect for a cluster of slow jobs.
        let stats = try postgres.query(SQLStatement(
            """
            SELECT autovacuum_count, autoanalyze_count, extract(epoch FROM last_autovacuum), extract(epoch FROM last_autoanalyze) \
            FROM pg_stat_user_tables WHERE relname = '\(table)'
            """))
        let statsText = ["autovacuum_count", "autoanalyze_count", "last_autovacuum_epoch", "last_autoanalyze_epoch"].enumerated()
            .map { "\($1)=\(stats.text(0, $0) ?? "none")" }.joined(separator: "\n") + "\n"
        try statsText.write(toFile: "\(results)/poisson-\(index)-autovacuum.txt", atomically: true, encoding: .utf8)
        try postgres.execute("DROP TABLE \(table), \(table)_dead_letters")

        // Every job's insert time and latency, for finding where the outliers came from.
        let csv = "insert_epoch,latency_ms\n" + arrivals.map { String(format: "%.6f,%.3f", $0.inserted, $0.milliseconds) }.joined(separator: "\n") + "\n"
        try csv.write(toFile: "\(results)/poisson-\(index)-latencies.csv", atomically: true, encoding: .utf8)

        let latencies = arrivals.map(\.milliseconds).sorted()
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        // pgbench's own figure of transactions per second; the rows over -T if it printed none.
        let tps = printed.split(separator: "\n").first { $0.hasPrefix("tps = ") }?.dropFirst(6).split(separator: " ").first.flatMap { Double($0) }
        return LatencyRun.Result(
            label: "\(rate) jobs/s Poisson (pgbench), run \(index)", rate: rate, notify: true, producer: "pgbench",
            achievedRate: tps ?? Double(rows) / Double(seconds), p50: percentile(0.5), p99: percentile(0.99), max: latencies.last!,
            goalP99: goalP99)
    }
}

/// A thread BRPOPing one queue (and RPOPing what waits behind each job), noting each job's insert
/// time (its first arg) and latency.
final class PoissonConsumer: @unchecked Sendable {
    struct Arrival {
        let inserted: Double
        let milliseconds: Double
    }

    private let servers: BenchServers
    private let queue: String
    private let lock = NSLock()
    private var arrivals: [Arrival] = []
    private var unreadableJobs = 0
    private var stopping = false
    private var stopped = false

    init(servers: BenchServers, queue: String) {
        self.servers = servers
        self.queue = queue
    }

    func start() throws {
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            defer { locked { stopped = true } }
            guard let connection = try? servers.redis() else {
                locked { stopped = true }
                ready.signal()
                return
            }
            ready.signal()
            while !locked({ stopping }) {
                guard let reply = try? connection.send([RedisCommand("BRPOP", queue, "0.2")])[0] else { return }
                guard case .array(let pair) = reply, pair.count == 2, case .bulk(let job) = pair[1] else { continue }
                record(job, at: realtimeSeconds())
                // The jobs queued behind it come in one more round trip: one BRPOP per job keeps
                // up with 2,000 jobs/s only while this thread gets a core at once, and a backlog
                // of the consumer's own making is not the relay's latency.
                guard let rest = try? connection.send([RedisCommand("RPOP", queue, "1000")])[0] else { return }
                let now = realtimeSeconds()
                if case .array(let jobs) = rest {
                    for case .bulk(let job) in jobs { record(job, at: now) }
                }
            }
        }
        thread.start()
        ready.wait()
        guard !locked({ stopped }) else { throw BenchError("the consumer cannot connect to Redis") }
    }

    private func record(_ job: [UInt8], at now: Double) {
        guard let inserted = Self.insertTime(job) else {
            locked { unreadableJobs += 1 }
            return
        }
        locked { arrivals.append(Arrival(inserted: inserted, milliseconds: (now - inserted) * 1000)) }
    }

    /// The job's first arg, which the producer set to its insert time in seconds since the epoch.
    static func insertTime(_ job: [UInt8]) -> Double? {
        let marker = Array(#""args":["#.utf8)
        guard let start = job.indices.first(where: { job[$0...].starts(with: marker) }).map({ $0 + marker.count }),
            let end = job[start...].firstIndex(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "]") })
        else { return nil }
        return Double(String(decoding: job[start..<end], as: UTF8.self))
    }

    var count: Int { locked { arrivals.count + unreadableJobs } }
    var latencies: [Arrival] { locked { arrivals } }
    var unreadable: Int { locked { unreadableJobs } }

    /// Asks the thread to stop and waits until it has (at most one BRPOP timeout and a bit).
    func stop() {
        locked { stopping = true }
        let deadline = Date(timeIntervalSinceNow: 5)
        while !locked({ stopped }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

func realtimeSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
