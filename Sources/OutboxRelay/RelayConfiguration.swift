/// Everything the relay needs to run, built from the command line and checked before use.
public struct RelayConfiguration: Sendable {
    /// libpq connection string or `postgresql://` URL; may hold a password, so never print it.
    public var databaseURL: String
    /// A password read from `--database-password-file`; overrides the URL's.
    public var databasePassword: String?
    public var redis: RedisEndpoint
    /// Certificates for `rediss://`.
    public var redisTLS = RedisTLS()
    /// Sentinel and replica acknowledgements (`WAIT`); none by default.
    public var redisReplication = RedisReplication()
    public var layout: OutboxLayout
    public var table: TableName
    /// Only rows with this `format` are relayed.
    public var messageFormat: String
    /// The split keys to serve, or `nil` to serve every key that has pending rows.
    public var splitKeys: [SplitKey]?
    /// Most rows fetched, pushed and marked in one batch.
    public var batchSize: Int
    /// Seconds to sleep when no key had anything to relay.
    public var sleepOnEmpty: Double
    /// Most batches relayed under one lease before it is released, so instances share keys fairly.
    public var batchesPerLease: Int
    public var sidekiq: SidekiqJobEncoder
    public var keys: SidekiqKeys
    /// Deleting rows enqueued long ago (`--cleanup`), or nil.
    public var cleanup: CleanupPolicy?
    /// Largest sum of payload bytes fetched in one batch (the first row always comes).
    public var maxBatchBytes: Int
    /// The channel the relay LISTENs on for `migrate --notify`'s wake-ups.
    public var notifyChannel: String
    /// Seconds any single call to PostgreSQL or Redis may take before it counts as failed.
    public var networkTimeout: Double
    /// Whether to count pending rows per key every 15 s for the metrics (always done while
    /// `/metrics` is served; `--metrics-url` needs them for res_outbox's `remaining`).
    public var samplesPending = false
    /// `WITH_ADVISORY_LOCK_PREFIX` as sidekiq-reliable_job's app sees it (nil: unset), for the
    /// gem's lock (``ReliableJobGemLock``) that the relay also holds while serving that layout.
    public var withAdvisoryLockPrefix: String?

    /// The lock of sidekiq-reliable_job's own enqueuer, held with the lease of that layout.
    public var reliableJobGemLock: ReliableJobGemLock? {
        layout == .reliableJob ? ReliableJobGemLock(prefix: withAdvisoryLockPrefix) : nil
    }

    public static let batchSizeRange = 1...10_000

    public init(
        databaseURL: String, redis: RedisEndpoint, layout: OutboxLayout = .res, table: TableName, messageFormat: String = "sidekiq5",
        splitKeys: [SplitKey]? = nil, batchSize: Int = 100, sleepOnEmpty: Double = 0.5, batchesPerLease: Int = 40,
        sidekiq: SidekiqJobEncoder = SidekiqJobEncoder(), keys: SidekiqKeys = SidekiqKeys(), networkTimeout: Double = 10,
        maxBatchBytes: Int = 16 * 1024 * 1024, notifyChannel: String = "outbox_relay"
    ) {
        self.cleanup = nil
        self.databasePassword = nil
        self.maxBatchBytes = maxBatchBytes
        self.notifyChannel = notifyChannel
        self.databaseURL = databaseURL
        self.redis = redis
        self.layout = layout
        self.table = table
        self.messageFormat = messageFormat
        self.splitKeys = splitKeys
        self.batchSize = batchSize
        self.sleepOnEmpty = sleepOnEmpty
        self.batchesPerLease = batchesPerLease
        self.sidekiq = sidekiq
        self.keys = keys
        self.networkTimeout = networkTimeout
    }

    public var queries: OutboxQueries { OutboxQueries(layout: layout, table: table, format: messageFormat) }
}
