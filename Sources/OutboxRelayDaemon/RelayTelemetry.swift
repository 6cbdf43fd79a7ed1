import Metrics
import OutboxRelay

/// What the relay's loop reports as it goes: progress to ``RelayHealth`` (every lease attempt and
/// batch, not only whole passes) and counts to the metrics. Metric handles are made once per
/// label and kept, so a batch costs a dictionary look-up rather than a trip through the metrics
/// registry; labels come from ``SplitKeyLabels``, so the maps and the exposition stay bounded.
/// Used by the relay's thread only.
final class RelayTelemetry {
    let health: RelayHealth?
    /// The clock for durations.
    let monotonicMicros: () -> Int64
    private var labels: SplitKeyLabels
    private var relayed: [String: Counter] = [:]
    private var deadLettered: [String: Counter] = [:]
    private var leases: [String: Counter] = [:]
    private var connectionErrors: [String: Counter] = [:]
    private var pending: [String: Gauge] = [:]
    private var oldestAge: [String: Gauge] = [:]
    private lazy var batchDuration = Timer(label: RelayMetrics.batchDuration)
    /// Labels whose pending gauges the last sample set, to zero them once their keys are drained.
    private var sampled: Set<String> = []

    init(health: RelayHealth?, splitKeys: [SplitKey]?, monotonicMicros: @escaping () -> Int64) {
        self.health = health
        self.labels = SplitKeyLabels(configured: splitKeys)
        self.monotonicMicros = monotonicMicros
    }

    /// A lease on `key` was tried: progress, whatever the answer.
    func leaseAttempt(_ key: SplitKey, acquired: Bool) {
        health?.progressed()
        let labelled = labels.label(key)
        let result = acquired ? "acquired" : "held_elsewhere"
        handle(&leases, "\(labelled)\n\(result)") {
            Counter(label: RelayMetrics.leases, dimensions: [("split_key", labelled), ("result", result)])
        }.increment()
    }

    /// A batch of `key` was pushed and its mark committed, `durationMicros` after the previous one.
    func batchRelayed(_ key: SplitKey, jobs: Int, durationMicros: Int64) {
        health?.progressed(serversAnswered: true)
        counter(&relayed, RelayMetrics.relayed, key).increment(by: jobs)
        batchDuration.recordMicroseconds(durationMicros)
    }

    func deadLettered(_ key: SplitKey, rows: Int) {
        counter(&deadLettered, RelayMetrics.deadLettered, key).increment(by: rows)
    }

    /// A failure talking to `server` (`postgres` or `redis`); with `by: 0`, makes the series exist.
    func connectionError(_ server: String, by count: Int = 1) {
        handle(&connectionErrors, server) { Counter(label: RelayMetrics.connectionErrors, dimensions: [("server", server)]) }
            .increment(by: count)
    }

    /// A sample of the pending rows: per key, how many and the oldest one's age in seconds. Keys
    /// sharing a label add up their rows and report their oldest row; labels sampled before whose
    /// keys have nothing pending now (and the configured keys) read 0.
    func sampledPending(_ rows: [(key: SplitKey, pending: Double, oldestAge: Double)], configured: [SplitKey]?) {
        var totals: [String: (pending: Double, oldestAge: Double)] = [:]
        for row in rows {
            let label = labels.label(row.key)
            let total = totals[label, default: (0, 0)]
            totals[label] = (total.pending + row.pending, max(total.oldestAge, row.oldestAge))
        }
        let idle = sampled.union((configured ?? []).map { labels.label($0) }).subtracting(totals.keys)
        for label in idle { totals[label] = (0, 0) }
        for (label, total) in totals {
            handle(&pending, label) { Gauge(label: RelayMetrics.pending, dimensions: [("split_key", label)]) }.record(total.pending)
            handle(&oldestAge, label) { Gauge(label: RelayMetrics.oldestAge, dimensions: [("split_key", label)]) }.record(total.oldestAge)
        }
        sampled = Set(totals.keys).subtracting(idle)
    }

    private func counter(_ map: inout [String: Counter], _ name: String, _ key: SplitKey) -> Counter {
        let labelled = labels.label(key)
        return handle(&map, labelled) { Counter(label: name, dimensions: [("split_key", labelled)]) }
    }

    private func handle<Handle>(_ map: inout [String: Handle], _ key: String, make: () -> Handle) -> Handle {
        if let existing = map[key] { return existing }
        let made = make()
        map[key] = made
        return made
    }
}
