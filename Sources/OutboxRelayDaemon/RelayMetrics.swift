import Metrics

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
}
