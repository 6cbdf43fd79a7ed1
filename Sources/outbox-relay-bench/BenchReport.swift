import Foundation

/// The figures of one `make bench` run, as a table and as JSON.
struct BenchReport {
    let machine: MachineInfo
    let rows: Int
    var throughput: [ThroughputRun.Result] = []
    var latency: [LatencyRun.Result] = []
    var idleCPUPercent = 0.0

    init(machine: MachineInfo, rows: Int) {
        self.machine = machine
        self.rows = rows
    }

    func table() -> String {
        var lines = [
            "outbox-relay benchmark, \(machine.date), \(machine.cores) cores (\(machine.cpu)), \(machine.memoryGB) GiB, PostgreSQL \(machine.postgres), Redis \(machine.redis)",
            "",
            "| throughput (\(rows) rows, batch 1000) | relay jobs/s | PostgreSQL-only rows/s | ratio | ratio of each run | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in throughput {
            let runs = run.runRatios.map { String(format: "%.2f", $0) }.joined(separator: ", ")
            lines.append(String(
                format: "| %@ | %.0f | %.0f | %.2f | %@ | %.1f |", run.name, run.relayRate, run.postgresRate, run.ratio, runs, run.peakRSSMB))
        }
        lines += ["", "| latency, commit to Redis | achieved/s | p50 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: |"]
        for run in latency {
            lines.append(String(format: "| %d jobs/s, notifications %@ | %.0f | %.2f | %.2f | %.2f |",
                run.rate, run.notify ? "on" : "off", run.achievedRate, run.p50, run.p99, run.max))
        }
        lines += ["", String(format: "idle CPU: %.3f%% of one core", idleCPUPercent)]
        return lines.joined(separator: "\n")
    }

    func json() -> [String: Any] {
        [
            "machine": [
                "date": machine.date, "cpu": machine.cpu, "cores": machine.cores, "memory_gb": machine.memoryGB,
                "postgres": machine.postgres, "redis": machine.redis,
            ],
            "rows": rows,
            "throughput": throughput.map {
                ["case": $0.name, "relay_jobs_per_s": $0.relayRate, "postgres_rows_per_s": $0.postgresRate, "ratio": $0.ratio, "run_ratios": $0.runRatios, "peak_rss_mb": $0.peakRSSMB]
            },
            "latency": latency.map {
                ["rate": $0.rate, "notify": $0.notify, "achieved_per_s": $0.achievedRate, "p50_ms": $0.p50, "p99_ms": $0.p99, "max_ms": $0.max]
            },
            "idle_cpu_percent": idleCPUPercent,
        ]
    }
}
