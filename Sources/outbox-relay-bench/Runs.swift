import Foundation
import OutboxRelay
import OutboxRelayIO

struct ThroughputCase {
    let name: String
    let payloadBytes: Int
    let keys: Int
}

/// The relay draining `rows` rows, and PostgreSQL alone marking the same rows of an identical
/// table in batches of 1,000 inside one server-side loop (a DO block committing per batch), with
/// the relay's own way of finding the next batch (after the last id marked), so the comparison is
/// of the same work minus reading payloads and pushing them to Redis.
struct ThroughputRun {
    struct Result {
        let name: String
        let relayRate: Double
        let postgresRate: Double
        let peakRSSMB: Double
        /// relay / PostgreSQL-only, of one run or, for several, the median of their ratios.
        let ratio: Double
        /// Each run's ratio, when this sums up several.
        let runRatios: [Double]

        /// One run's figures, or with `runRatios`, several runs summed up; `ratio` defaults to the
        /// rates' own.
        init(name: String, relayRate: Double, postgresRate: Double, peakRSSMB: Double, ratio: Double? = nil, runRatios: [Double] = []) {
            self.name = name
            self.relayRate = relayRate
            self.postgresRate = postgresRate
            self.peakRSSMB = peakRSSMB
            self.ratio = ratio ?? relayRate / postgresRate
            self.runRatios = runRatios
        }

        /// Several runs of one case: the median of each rate and of the runs' ratios (each run
        /// measures the relay and PostgreSQL alone back to back, so its ratio is the fairest
        /// figure when the machine's speed drifts), and the highest peak RSS.
        static func median(of runs: [Result]) -> Result {
            func middle(_ values: [Double]) -> Double {
                let sorted = values.sorted()
                return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            }
            return Result(
                name: runs[0].name, relayRate: middle(runs.map(\.relayRate)), postgresRate: middle(runs.map(\.postgresRate)),
                peakRSSMB: runs.map(\.peakRSSMB).max() ?? 0, ratio: middle(runs.map(\.ratio)), runRatios: runs.map(\.ratio))
        }
        var line: String {
            String(format: "throughput %@: relay %.0f jobs/s, PostgreSQL alone %.0f rows/s, ratio %.2f, peak RSS %.1f MB",
                name, relayRate, postgresRate, ratio, peakRSSMB)
        }
    }

    let servers: BenchServers
    let rows: Int
    let item: ThroughputCase

    func run() throws -> Result {
        _ = try servers.createTable("bench_base", rows: rows, payloadBytes: item.payloadBytes, keys: item.keys)
        let postgres = try servers.postgres()
        let started = Date()
        try postgres.execute(
            """
            DO $$ DECLARE k text; last int8; BEGIN \
            FOR k IN SELECT DISTINCT split_key FROM bench_base ORDER BY 1 LOOP last := 0; \
            LOOP EXECUTE format('WITH batch AS (SELECT id FROM bench_base WHERE format = %L AND enqueued_at IS NULL \
            AND split_key = %L AND id > %s ORDER BY id LIMIT 1000), marked AS (UPDATE bench_base SET enqueued_at = now() \
            WHERE id IN (SELECT id FROM batch) RETURNING id) SELECT max(id) FROM marked', 'sidekiq5', k, last) INTO last; \
            EXIT WHEN last IS NULL; COMMIT; END LOOP; END LOOP; END $$
            """)
        let postgresSeconds = Date().timeIntervalSince(started)
        try postgres.execute("DROP TABLE bench_base, bench_base_dead_letters")

        _ = try servers.createTable("bench_relay", rows: rows, payloadBytes: item.payloadBytes, keys: item.keys)
        try servers.flushRedis()
        let relay = try servers.startRelay(table: "bench_relay", extra: ["--batch-size", "1000", "--sleep-on-empty", "0.05"])
        defer { relay.stop() }
        try relay.waitUntilReady()
        let relayStarted = Date()
        let done = SQLStatement("SELECT NOT EXISTS (SELECT 1 FROM bench_relay WHERE format = 'sidekiq5' AND enqueued_at IS NULL)")
        while try postgres.query(done).bool(0, 0) != true {
            Thread.sleep(forTimeInterval: 0.005)
        }
        let relaySeconds = Date().timeIntervalSince(relayStarted)
        let pushed = try servers.redis().send((0..<item.keys).map { RedisCommand("LLEN", "queue:k\($0)") })
        let total = pushed.reduce(0) { sum, reply in if case .integer(let n) = reply { sum + Int(n) } else { sum } }
        guard total == rows else { throw BenchError("Redis holds \(total) jobs, expected \(rows)") }
        let rss = Double(relay.peakRSSKilobytes) / 1024
        try postgres.execute("DROP TABLE bench_relay, bench_relay_dead_letters")
        return Result(name: item.name, relayRate: Double(rows) / relaySeconds, postgresRate: Double(rows) / postgresSeconds, peakRSSMB: rss)
    }
}

/// A producer commits one job per transaction at a steady rate while a consumer BRPOPs them;
/// latency is from just before the INSERT to the moment the consumer has the job.
struct LatencyRun {
    struct Result {
        let rate: Int
        let notify: Bool
        let achievedRate: Double
        let p50: Double
        let p99: Double
        let max: Double

        var line: String {
            String(format: "latency at %d/s, notifications %@: p50 %.2f ms, p99 %.2f ms, max %.2f ms (achieved %.0f/s)",
                rate, notify ? "on" : "off", p50, p99, max, achievedRate)
        }
    }

    let servers: BenchServers
    let rate: Int
    let seconds: Double
    let notify: Bool

    func run() throws -> Result {
        _ = try servers.createTable("bench_latency", rows: 0, payloadBytes: 200, keys: 1, notify: notify)
        try servers.flushRedis()
        let relay = try servers.startRelay(table: "bench_latency", extra: ["--batch-size", "1000"])
        defer { relay.stop() }
        try relay.waitUntilReady()
        Thread.sleep(forTimeInterval: 0.3)

        let count = Int(Double(rate) * seconds)
        let received = Timestamps(count: count)
        let servers = self.servers
        let thread = Thread {
            guard let consumer = try? servers.redis() else { return }
            while !received.isComplete {
                guard let reply = try? consumer.send([RedisCommand("BRPOP", "queue:lat", "1")])[0], case .array(let pair) = reply,
                    pair.count == 2, let job = pair[1].text
                else { if consumer.isBroken { return } else { continue } }
                let now = monotonicSeconds()
                if let range = job.range(of: #""args":["#), let end = job[range.upperBound...].firstIndex(where: { $0 == "," || $0 == "]" }),
                    let index = Int(job[range.upperBound..<end])
                {
                    received.set(index, now)
                }
            }
        }
        thread.start()

        let postgres = try servers.postgres()
        let padding = String(repeating: "x", count: 90)
        var sent = [Double](repeating: 0, count: count)
        let start = monotonicSeconds()
        for index in 0..<count {
            let due = start + Double(index) / Double(rate)
            let wait = due - monotonicSeconds()
            if wait > 0 { Thread.sleep(forTimeInterval: wait) }
            let payload = #"{"class":"BenchJob","queue":"lat","args":[\#(index),"\#(padding)"],"jid":"\#(String(format: "%024x", index))"}"#
            sent[index] = monotonicSeconds()
            try postgres.query(SQLStatement(
                name: "bench_insert",
                "INSERT INTO bench_latency (split_key, format, payload, created_at) VALUES ('lat', 'sidekiq5', convert_to($1, 'UTF8'), now() AT TIME ZONE 'utc')",
                [payload]))
        }
        let achieved = Double(count) / (monotonicSeconds() - start)
        let deadline = monotonicSeconds() + 10
        while !received.isComplete && monotonicSeconds() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        received.finish()
        let latencies = zip(sent, received.values).compactMap { sent, got in got.map { ($0 - sent) * 1000 } }.sorted()
        guard latencies.count == count else { throw BenchError("only \(latencies.count) of \(count) jobs arrived") }
        try postgres.execute("DROP TABLE bench_latency, bench_latency_dead_letters")
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        return Result(rate: rate, notify: notify, achievedRate: achieved, p50: percentile(0.5), p99: percentile(0.99), max: latencies.last!)
    }
}

/// CPU the relay uses while nothing is pending, as a percentage of one core.
struct IdleRun {
    let servers: BenchServers
    let seconds: Double

    func run() throws -> Double {
        _ = try servers.createTable("bench_idle", rows: 0, payloadBytes: 200, keys: 1, notify: true)
        let relay = try servers.startRelay(table: "bench_idle")
        defer { relay.stop() }
        try relay.waitUntilReady()
        Thread.sleep(forTimeInterval: 1)
        let before = relay.cpuSeconds
        Thread.sleep(forTimeInterval: seconds)
        let used = relay.cpuSeconds - before
        try servers.postgres().execute("DROP TABLE bench_idle, bench_idle_dead_letters")
        return used / seconds * 100
    }
}

/// Arrival times written by the consumer thread and read by the producer.
final class Timestamps: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Double?]
    private var remaining: Int
    private var finished = false

    init(count: Int) {
        stored = Array(repeating: nil, count: count)
        remaining = count
    }

    func set(_ index: Int, _ time: Double) {
        lock.lock()
        defer { lock.unlock() }
        guard index < stored.count, stored[index] == nil else { return }
        stored[index] = time
        remaining -= 1
    }

    var isComplete: Bool {
        lock.lock()
        defer { lock.unlock() }
        return remaining == 0 || finished
    }

    func finish() {
        lock.lock()
        finished = true
        lock.unlock()
    }

    var values: [Double?] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
