import Foundation
import OutboxRelay
import OutboxRelayIO

/// `make bench`: throughput against PostgreSQL's own marking rate, commit-to-Redis latency, and
/// the relay's memory and idle CPU, against the throwaway servers of scripts/with-servers.sh.
@main
struct Bench {
    static func main() throws {
        let options = try BenchOptions(CommandLine.arguments.dropFirst())
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["OUTBOX_TEST_DATABASE_URL"], let redisPort = environment["OUTBOX_TEST_REDIS_PORT"].flatMap(Int.init) else {
            throw BenchError("run through scripts/with-servers.sh (make bench), which starts the servers")
        }
        let servers = BenchServers(databaseURL: databaseURL, redisPort: redisPort, relay: options.relay)
        var report = BenchReport(machine: MachineInfo.current(servers: servers), rows: options.rows)

        try FileManager.default.createDirectory(atPath: options.results, withIntermediateDirectories: true)

        let splitKeys = 20_000
        let throughputCases = [
            ThroughputCase(name: "200 B, 1 key", payloadBytes: 200, keys: 1),
            ThroughputCase(name: "200 B, 8 keys", payloadBytes: 200, keys: 8),
            ThroughputCase(name: "200 B, 1 key, batch 100", payloadBytes: 200, keys: 1, batchSize: 100, goal: 0.8),
            ThroughputCase(
                name: "200 B, \(splitKeys) keys × \(options.rows / splitKeys) rows", payloadBytes: 200, keys: splitKeys, baseline: .oneKeyRelay,
                goal: 0.5),
            ThroughputCase(name: "4 KB, 1 key", payloadBytes: 4096, keys: 1, baseline: .fairLimit, goal: 0.8),
        ]
        for item in throughputCases where options.runs(item.name) {
            var runs: [ThroughputRun.Result] = []
            let measure = ThroughputRun(servers: servers, rows: options.rows, item: item)
            var before = try measure.baseline()
            for _ in 0..<options.repeats {
                let started = Date()
                let (relayRate, rss) = try measure.relayRate()
                let after = try measure.baseline()
                let result = measure.result(relayRate: relayRate, peakRSSMB: rss, before: before, after: after)
                before = after
                print(result.line)
                runs.append(result)
                // Repeats are for cheap cases: one whose run takes over half a minute (20,000
                // keys, at the relay's rate of 2026-11-27) runs once, so make bench stays near
                // 6 minutes on 2 cores.
                let seconds = Date().timeIntervalSince(started)
                if runs.count < options.repeats && seconds > 30 {
                    print(String(format: "(one run of %@ took %.0f s: no more runs of it)", item.name, seconds))
                    break
                }
            }
            let median = ThroughputRun.Result.median(of: runs)
            if runs.count > 1 { print("median of \(runs.count): " + median.line) }
            report.throughput.append(median)
        }
        for (rate, notify) in [(200, true), (2000, true), (200, false)] where options.runs("latency") {
            let result = try LatencyRun(servers: servers, rate: rate, seconds: options.latencySeconds, notify: notify).run()
            print(result.line)
            report.latency.append(result)
        }
        for index in 1...3 where options.runs("poisson") {
            let result = try PoissonRun(
                servers: servers, rate: 2000, seconds: Int(options.latencySeconds.rounded()), index: index, results: options.results,
                goalP99: 10
            ).run()
            print(result.line)
            report.latency.append(result)
        }
        if options.runs("idle") {
            report.idleCPUPercent = try IdleRun(servers: servers, seconds: options.idleSeconds).run()
            print(String(format: "idle CPU over %.0f s: %.3f%% of one core", options.idleSeconds, report.idleCPUPercent))
        }

        print("\n" + report.table())
        let data = try JSONSerialization.data(withJSONObject: report.json(), options: [.prettyPrinted, .sortedKeys])
        let path = "\(options.results)/bench.json"
        try data.write(to: URL(fileURLWithPath: path))
        print("figures written to \(path)")
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

struct BenchOptions {
    var relay = ".build/release/outbox-relay"
    var rows = 100_000
    var results = "results"
    var latencySeconds = 5.0
    var idleSeconds = 10.0
    /// Runs of each throughput case; the report takes the median of each rate, as one run on a
    /// 2-core machine varies by ±15 %.
    var repeats = 3
    /// Only the cases whose name contains one of these `|`-separated words (latency cases are
    /// named "latency", "poisson" and "idle"); every case when empty. For trying one case out.
    var only: [String] = []

    func runs(_ name: String) -> Bool { only.isEmpty || only.contains { name.contains($0) } }

    init(_ arguments: ArraySlice<String>) throws {
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { throw BenchError("\(flag) needs a value") }
            switch flag {
            case "--relay": relay = value
            case "--rows": rows = Int(value) ?? rows
            case "--results": results = value
            case "--latency-seconds": latencySeconds = Double(value) ?? latencySeconds
            case "--idle-seconds": idleSeconds = Double(value) ?? idleSeconds
            case "--repeat": repeats = max(1, Int(value) ?? repeats)
            case "--only": only = value.split(separator: "|").map(String.init)
            default: throw BenchError("unknown flag \(flag)")
            }
        }
    }
}
