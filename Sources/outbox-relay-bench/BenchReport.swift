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
            "| throughput (\(rows) rows) | batch | relay jobs/s | baseline | baseline/s | ratio | goal | ratio of each run | peak RSS MB |",
            "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: |",
        ]
        for run in throughput {
            let runs = run.runRatios.map { String(format: "%.2f", $0) }.joined(separator: ", ")
            lines.append(String(
                format: "| %@ | %d | %.0f | %@ | %.0f | %.2f | %@ | %@ | %.1f |", run.name, run.batchSize, run.relayRate, run.baselineDescription,
                run.baselineRate, run.ratio, run.goal == nil ? "—" : run.goalDescription, runs, run.peakRSSMB))
        }
        lines += [
            "", "| latency, commit to Redis | achieved/s | p50 ms | p99 ms | max ms | goal |", "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for run in latency {
            lines.append(String(format: "| %@ | %.0f | %.2f | %.2f | %.2f | %@ |",
                run.label, run.achievedRate, run.p50, run.p99, run.max, run.goalP99 == nil ? "—" : run.goalDescription))
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
            "throughput": throughput.map { run -> [String: Any] in
                var entry: [String: Any] = [
                    "case": run.name, "batch_size": run.batchSize, "relay_jobs_per_s": run.relayRate, "baseline": run.baseline.label,
                    "baseline_per_s": run.baselineRate, "ratio": run.ratio, "run_ratios": run.runRatios, "peak_rss_mb": run.peakRSSMB,
                ]
                if case .postgresMarking = run.baseline { entry["postgres_rows_per_s"] = run.baselineRate }
                if let rate = run.postgresFetchRate { entry["postgres_fetch_mark_rows_per_s"] = rate }
                if let rate = run.redisPushRate { entry["redis_lpush_jobs_per_s"] = rate }
                if let goal = run.goal, let met = run.meetsGoal { (entry["goal_ratio"], entry["meets_goal"]) = (goal, met) }
                return entry
            },
            "latency": latency.map { run -> [String: Any] in
                var entry: [String: Any] = [
                    "label": run.label, "rate": run.rate, "notify": run.notify, "producer": run.producer, "achieved_per_s": run.achievedRate,
                    "p50_ms": run.p50, "p99_ms": run.p99, "max_ms": run.max,
                ]
                if let goal = run.goalP99, let met = run.meetsGoal { (entry["goal_p99_ms"], entry["meets_goal"]) = (goal, met) }
                return entry
            },
            "idle_cpu_percent": idleCPUPercent,
        ]
    }
}
