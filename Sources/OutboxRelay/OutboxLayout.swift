/// The outbox table layouts the relay serves.
public enum OutboxLayout: String, Sendable, CaseIterable {
    /// ruby_event_store-outbox's `event_store_outbox`: pending while `enqueued_at IS NULL`, one
    /// lease per `split_key`, only rows of the configured `format`.
    case res
    /// sidekiq-reliable_job's `reliable_job_outbox`: pending while `status = 'pending'`; after the
    /// push a row becomes `enqueued` (or `scheduled`) and is never deleted by the relay. It has no
    /// split key, so the whole table is one lease.
    case reliableJob = "reliable_job"

    public var defaultTable: String {
        switch self {
        case .res: "event_store_outbox"
        case .reliableJob: "reliable_job_outbox"
        }
    }

    public var hasSplitKeys: Bool { self == .res }
}
