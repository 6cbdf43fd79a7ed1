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
    /// What makes the row itself unrelayable, found while reading it (a `created_at` of
    /// `infinity`, say); such a row is dead-lettered with this reason.
    public let problem: String?

    public init(id: Int64, payload: [UInt8], createdAtMicros: Int64, jid: String? = nil, problem: String? = nil) {
        self.id = id
        self.payload = payload
        self.createdAtMicros = createdAtMicros
        self.jid = jid
        self.problem = problem
    }

    /// A row as read from the server: `payload` and `postgresMicros` (`created_at` in PostgreSQL's
    /// binary format) may be NULL or out of range in a table the relay did not create; such a row
    /// gets a ``problem`` instead of crashing the relay.
    public init(id: Int64, payload: [UInt8]?, postgresMicros: Int64?, jid: String?) {
        var problem: String?
        let createdAt: Int64
        switch postgresMicros.map(OutboxQueries.epochMicros(postgresMicros:)) {
        case .some(.success(let micros)): createdAt = micros
        case .some(.failure(let reason)): createdAt = 0; problem = reason.reason
        case .none: createdAt = 0; problem = "created_at is NULL"
        }
        if payload == nil { problem = "payload is NULL" }
        self.init(id: id, payload: payload ?? [], createdAtMicros: createdAt, jid: jid, problem: problem)
    }
}
