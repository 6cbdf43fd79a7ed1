/// One pending row of the outbox table, as fetched for a batch.
public struct OutboxRow: Sendable, Equatable {
    /// The row's primary key; rows are relayed in ascending `id` order.
    public let id: Int64
    /// The stored Sidekiq job, as UTF-8 JSON bytes.
    public let payload: [UInt8]
    /// `created_at` in microseconds since the Unix epoch (the column is read as UTC).
    public let createdAtMicros: Int64
    /// The row's own jid column, where the layout has one (sidekiq-reliable_job): a payload without
    /// a `jid` gets this one, so the gem's middleware finds the row again.
    public let jid: String?

    public init(id: Int64, payload: [UInt8], createdAtMicros: Int64, jid: String? = nil) {
        self.id = id
        self.payload = payload
        self.createdAtMicros = createdAtMicros
        self.jid = jid
    }
}
