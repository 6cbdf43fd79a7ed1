import Foundation
import OutboxRelay
import OutboxRelayIO

/// What a throughput case's relay rate is held against. Every relay run is held against the
/// mean of two measurements of its baseline, one right before the run and one right after (the
/// one after is the next run's one before), since this 2-core VM's speed swings within seconds:
/// nine runs of `--batch-size 100` against the baseline before each gave ratios from 0.67 to 1.06,
/// and the eight of them with a baseline after, against the mean of the two, 0.79 to 0.94.
enum Baseline {
    /// PostgreSQL alone marking an identical table in batches of 1,000 (the DO block).
    case postgresMarking
    /// The relay's own rate on one key (the same rows and payload size, all with one key),
    /// measured around each run of the case, so the machine's drift over the minutes between the
    /// "200 B, 1 key" case and this one does not enter the ratio.
    case oneKeyRelay
    /// The slower of PostgreSQL alone fetching the payloads to a client and marking them, and
    /// Redis alone taking the same pushes: what any relay between the two could reach at best.
    case fairLimit

    var label: String {
        switch self {
        case .postgresMarking: "PostgreSQL alone marking"
        case .oneKeyRelay: "relay on 1 key"
        case .fairLimit: "fair limit"
        }
    }
}

struct ThroughputCase {
    let name: String
    let payloadBytes: Int
    let keys: Int
    /// The relay's `--batch-size`; the PostgreSQL-alone baseline always marks 1,000 per batch.
    var batchSize = 1000
    var baseline = Baseline.postgresMarking
    /// The ratio relay / baseline the case should reach, when issue 16 sets one.
    var goal: Double?
}

/// A goal's verdict as the lines and the table print it.
func verdict(_ met: Bool) -> String { met ? "meets goal" : "BELOW GOAL" }

/// The relay draining `rows` rows, against the case's baseline: PostgreSQL alone marking the same
/// rows of an identical table in batches of 1,000 inside one server-side loop (a DO block
/// committing per batch), with the relay's own way of finding the next batch (after the last id
/// marked), so the comparison is of the same work minus reading payloads and pushing them to
/// Redis; or the relay's one-key rate; or the fair limit of both servers alone (``Baseline``).
struct ThroughputRun {
    struct Result {
        let name: String
        let batchSize: Int
        let baseline: Baseline
        let relayRate: Double
        let baselineRate: Double
        /// The fair limit's two halves: PostgreSQL fetching and marking, Redis taking LPUSHes.
        let postgresFetchRate: Double?
        let redisPushRate: Double?
        let peakRSSMB: Double
        /// relay / baseline, of one run or, for several, the median of their ratios.
        let ratio: Double
        /// Each run's ratio, when this sums up several.
        let runRatios: [Double]
        let goal: Double?
        /// The baseline measured right before and right after the run, for one run.
        var baselineBracket: [Double] = []

        var meetsGoal: Bool? { goal.map { ratio >= $0 } }

        /// Several runs of one case: the median of each rate and of the runs' ratios (each run's
        /// ratio is against the baselines measured right around it, so it is the fairest figure
        /// when the machine's speed drifts), and the highest peak RSS.
        static func median(of runs: [Result]) -> Result {
            func middle(_ values: [Double]) -> Double {
                let sorted = values.sorted()
                return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            }
            let fetch = runs.compactMap(\.postgresFetchRate)
            let push = runs.compactMap(\.redisPushRate)
            return Result(
                name: runs[0].name, batchSize: runs[0].batchSize, baseline: runs[0].baseline, relayRate: middle(runs.map(\.relayRate)),
                baselineRate: middle(runs.map(\.baselineRate)), postgresFetchRate: fetch.isEmpty ? nil : middle(fetch),
                redisPushRate: push.isEmpty ? nil : middle(push), peakRSSMB: runs.map(\.peakRSSMB).max() ?? 0,
                ratio: middle(runs.map(\.ratio)), runRatios: runs.map(\.ratio), goal: runs[0].goal)
        }

        /// The baseline as the table names it, with the fair limit's two rates.
        var baselineDescription: String {
            guard let postgresFetchRate, let redisPushRate else { return baseline.label }
            return String(format: "fair limit: lower of PostgreSQL fetch+mark %.0f/s, Redis LPUSH %.0f/s", postgresFetchRate, redisPushRate)
        }

        var goalDescription: String {
            guard let goal, let meetsGoal else { return "" }
            return String(format: "goal ≥ %.2f: %@", goal, verdict(meetsGoal))
        }

        var line: String {
            var line = String(format: "throughput %@ (batch %d): relay %.0f jobs/s, %@ %.0f/s", name, batchSize, relayRate, baselineDescription, baselineRate)
            if baselineBracket.count == 2 { line += String(format: " (mean of %.0f before and %.0f after)", baselineBracket[0], baselineBracket[1]) }
            line += String(format: ", ratio %.2f, peak RSS %.1f MB", ratio, peakRSSMB)
            if goal != nil { line += ", " + goalDescription }
            return line
        }
    }

    let servers: BenchServers
    let rows: Int
    let item: ThroughputCase

    /// One measurement of the case's baseline: its rate, and for the fair limit its two halves.
    struct BaselineMeasure {
        let rate: Double
        var postgresFetchRate: Double? = nil
        var redisPushRate: Double? = nil

        /// The mean of the measurements taken right before and right after a relay run.
        static func bracket(_ before: Self, _ after: Self) -> Self {
            func mean(_ a: Double?, _ b: Double?) -> Double? { a.flatMap { a in b.map { (a + $0) / 2 } } }
            return Self(
                rate: (before.rate + after.rate) / 2, postgresFetchRate: mean(before.postgresFetchRate, after.postgresFetchRate),
                redisPushRate: mean(before.redisPushRate, after.redisPushRate))
        }
    }

    /// Measures the case's baseline once.
    func baseline() throws -> BaselineMeasure {
        switch item.baseline {
        case .postgresMarking:
            return BaselineMeasure(rate: try postgresMarkingRate())
        case .oneKeyRelay:
            let oneKey = ThroughputCase(name: "\(item.name), baseline on 1 key", payloadBytes: item.payloadBytes, keys: 1, batchSize: item.batchSize)
            return BaselineMeasure(rate: try ThroughputRun(servers: servers, rows: rows, item: oneKey).relayRate().0)
        case .fairLimit:
            let (postgres, redis) = try fairLimitRates()
            return BaselineMeasure(rate: min(postgres, redis), postgresFetchRate: postgres, redisPushRate: redis)
        }
    }

    /// A relay run's figures held against the mean of the baselines measured right before and
    /// right after it (see ``Baseline``).
    func result(relayRate: Double, peakRSSMB: Double, before: BaselineMeasure, after: BaselineMeasure) -> Result {
        let baseline = BaselineMeasure.bracket(before, after)
        return Result(
            name: item.name, batchSize: item.batchSize, baseline: item.baseline, relayRate: relayRate, baselineRate: baseline.rate,
            postgresFetchRate: baseline.postgresFetchRate, redisPushRate: baseline.redisPushRate, peakRSSMB: peakRSSMB,
            ratio: relayRate / baseline.rate, runRatios: [], goal: item.goal, baselineBracket: [before.rate, after.rate])
    }

    /// PostgreSQL alone marking the rows in keyset batches of 1,000, one commit each, server-side.
    private func postgresMarkingRate() throws -> Double {
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
        let seconds = Date().timeIntervalSince(started)
        try postgres.execute("DROP TABLE bench_base, bench_base_dead_letters")
        return Double(rows) / seconds
    }

    /// (a) PostgreSQL alone handing the payload bytes to a client and marking them: keyset
    /// batches of 1,000 from one connection, a SELECT reading id and payload then an UPDATE of
    /// those ids, each its own commit; (b) Redis alone taking the same payload bytes as LPUSHes of
    /// 1,000 into one list, four commands in flight at a time. Rows per second of each.
    private func fairLimitRates() throws -> (postgres: Double, redis: Double) {
        _ = try servers.createTable("bench_base", rows: rows, payloadBytes: item.payloadBytes, keys: item.keys)
        let postgres = try servers.postgres()
        var payloads: [[UInt8]] = []
        payloads.reserveCapacity(rows)
        let started = Date()
        for key in 0..<item.keys {
            var last: Int64 = 0
            while true {
                let batch = try postgres.query(
                    SQLStatement(
                        name: "bench_fetch",
                        """
                        SELECT id, payload FROM bench_base WHERE format = 'sidekiq5' AND enqueued_at IS NULL AND split_key = $1 \
                        AND id > $2::int8 ORDER BY id LIMIT 1000
                        """, ["k\(key)", String(last)]),
                    decoding: { row in (row.int64(0) ?? 0, row.bytes(1) ?? []) })
                guard let end = batch.last?.0 else { break }
                try postgres.query(SQLStatement(
                    name: "bench_mark", "UPDATE bench_base SET enqueued_at = now() WHERE id = ANY($1::int8[])",
                    [batch.map(\.0).postgresArrayLiteral]))
                payloads.append(contentsOf: batch.map(\.1))
                last = end
            }
        }
        let postgresSeconds = Date().timeIntervalSince(started)
        guard payloads.count == rows else { throw BenchError("PostgreSQL alone fetched \(payloads.count) rows, expected \(rows)") }
        try postgres.execute("DROP TABLE bench_base, bench_base_dead_letters")

        try servers.flushRedis()
        let redis = try servers.redis()
        let list = Array("bench:lpush".utf8)
        let commands = stride(from: 0, to: payloads.count, by: 1000).map { start in
            RedisCommand([Array("LPUSH".utf8), list] + payloads[start..<min(start + 1000, payloads.count)])
        }
        payloads = []
        let pushStarted = Date()
        for start in stride(from: 0, to: commands.count, by: 4) {
            for reply in try redis.send(Array(commands[start..<min(start + 4, commands.count)])) {
                if case .error(let message) = reply { throw BenchError("LPUSH failed: \(message)") }
            }
        }
        let redisSeconds = Date().timeIntervalSince(pushStarted)
        let pushed = try servers.countJobs(queues: ["bench:lpush"])
        guard pushed == rows else { throw BenchError("Redis alone holds \(pushed) jobs, expected \(rows)") }
        try servers.flushRedis()
        return (Double(rows) / postgresSeconds, Double(rows) / redisSeconds)
    }

    /// The relay draining a fresh table, in jobs per second, and its peak RSS in MB; throws unless
    /// every job is in Redis.
    func relayRate() throws -> (Double, Double) {
        _ = try servers.createTable("bench_relay", rows: rows, payloadBytes: item.payloadBytes, keys: item.keys)
        try servers.flushRedis()
        let relay = try servers.startRelay(table: "bench_relay", extra: ["--batch-size", String(item.batchSize), "--sleep-on-empty", "0.05"])
        defer { relay.stop() }
        try relay.waitUntilReady()
        let postgres = try servers.postgres()
        let relayStarted = Date()
        let done = SQLStatement("SELECT NOT EXISTS (SELECT 1 FROM bench_relay WHERE format = 'sidekiq5' AND enqueued_at IS NULL)")
        let deadline = Date(timeIntervalSinceNow: 300)
        while try postgres.query(done).bool(0, 0) != true {
            guard Date() < deadline else { throw BenchError("\(item.name): the relay did not drain the table in 300 s: \(relay.log.suffix(2000))") }
            Thread.sleep(forTimeInterval: 0.005)
        }
        let relaySeconds = Date().timeIntervalSince(relayStarted)
        let total = try servers.countJobs(queues: (0..<item.keys).map { "queue:k\($0)" })
        guard total == rows else { throw BenchError("\(item.name): Redis holds \(total) jobs, expected \(rows)") }
        let rss = Double(relay.peakRSSKilobytes) / 1024
        try postgres.execute("DROP TABLE bench_relay, bench_relay_dead_letters")
        return (Double(rows) / relaySeconds, rss)
    }
}

/// A producer commits one job per transaction at a steady rate while a consumer BRPOPs them;
/// latency is from just before the INSERT to the moment the consumer has the job.
struct LatencyRun {
    struct Result {
        /// The run as the table names it.
        let label: String
        let rate: Int
        let notify: Bool
        /// `steady` (this process commits at fixed intervals) or `pgbench` (Poisson arrivals).
        let producer: String
        let achievedRate: Double
        let p50: Double
        let p99: Double
        let max: Double
        /// The highest p99 in ms that meets issue 16's goal, when the run has one.
        var goalP99: Double? = nil

        var meetsGoal: Bool? { goalP99.map { p99 <= $0 } }

        var goalDescription: String {
            guard let goalP99, let meetsGoal else { return "" }
            return String(format: "goal p99 ≤ %.0f ms: %@", goalP99, verdict(meetsGoal))
        }

        var line: String {
            var line = String(format: "latency, %@: p50 %.2f ms, p99 %.2f ms, max %.2f ms (achieved %.0f/s)", label, p50, p99, max, achievedRate)
            if goalP99 != nil { line += ", " + goalDescription }
            return line
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
        return Result(
            label: "\(rate) jobs/s, notifications \(notify ? "on" : "off")", rate: rate, notify: notify, producer: "steady",
            achievedRate: achieved, p50: percentile(0.5), p99: percentile(0.99), max: latencies.last!)
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
