import Metrics
import OutboxRelay

/// The relay's metrics, through swift-metrics (the command line bootstraps the Prometheus
/// backend). Names and help texts are listed once, in ``descriptions``.
public enum RelayMetrics {
    static let relayed = "outbox_relay_jobs_relayed_total"
    static let deadLettered = "outbox_relay_jobs_dead_lettered_total"
    static let pending = "outbox_relay_pending_jobs"
    static let oldestAge = "outbox_relay_oldest_pending_age_seconds"
    static let batchDuration = "outbox_relay_batch_duration_seconds"
    static let leases = "outbox_relay_lease_acquisitions_total"
    static let connectionErrors = "outbox_relay_connection_errors_total"

    /// Help text per metric name, for the exposition's `# HELP` lines.
    public static let descriptions: [String: String] = [
        relayed: "Jobs pushed to Redis and marked enqueued, per split key.",
        deadLettered: "Rows moved to the dead-letter table, per split key.",
        pending: "Rows waiting to be relayed, per split key (sampled every 15 s).",
        oldestAge: "Age in seconds of the oldest pending row, per split key (sampled every 15 s).",
        batchDuration: "Time to fetch, push and mark one batch.",
        leases: "Lease attempts per split key; result is acquired or held_elsewhere.",
        connectionErrors: "Failures talking to a server; server is postgres or redis.",
    ]

    static func label(_ key: SplitKey) -> String { key.value ?? "" }

    // MARK: the lease's updates

    static func leaseAttempt(_ key: SplitKey, acquired: Bool) {
        Counter(label: leases, dimensions: [("split_key", label(key)), ("result", acquired ? "acquired" : "held_elsewhere")]).increment()
    }

    static func relayed(_ key: SplitKey, count: Int) {
        Counter(label: relayed, dimensions: [("split_key", label(key))]).increment(by: count)
    }

    static func deadLettered(_ key: SplitKey, count: Int) {
        Counter(label: deadLettered, dimensions: [("split_key", label(key))]).increment(by: count)
    }

    static func batchDuration(micros: Int64) {
        Timer(label: batchDuration).recordMicroseconds(micros)
    }
}
