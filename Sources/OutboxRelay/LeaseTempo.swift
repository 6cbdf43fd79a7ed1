/// Decides, batch by batch, how many rows to fetch and whether to keep a lease: the first fetch of
/// a lease asks for few rows (a trickle is pushed at once, without waiting for a big batch), each
/// full batch quadruples the next, up to the batch size; a key is released as soon as a fetch
/// finds fewer rows pending than it asked for, or after `maximumBatches`, so that other keys, and
/// other instances, get their turn.
public struct LeaseTempo: Sendable, Equatable {
    public static let firstLimit = 10

    public enum Next: Sendable, Equatable {
        case fetchAgain
        case release
    }

    public let maximumBatches: Int
    public let batchSize: Int
    public private(set) var batches = 0
    /// How many rows the next fetch asks for.
    public private(set) var limit: Int

    /// `carriedLimit` is the limit a previous lease on the same key reached when it let go of a
    /// key that still had a backlog, so a busy key does not climb from small batches every lease.
    public init(maximumBatches: Int, batchSize: Int, carriedLimit: Int? = nil) {
        self.maximumBatches = maximumBatches
        self.batchSize = batchSize
        self.limit = min(batchSize, carriedLimit ?? Self.firstLimit)
    }

    /// Whether the last batch left rows behind, so the next lease can start at ``limit``.
    public private(set) var leftBacklog = false

    /// Call after each batch with how many rows were pending within the fetch's limit.
    public mutating func afterBatch(available: Int) -> Next {
        batches += 1
        leftBacklog = false
        if available < limit { return .release }
        limit = min(batchSize, limit * 4)
        leftBacklog = batches >= maximumBatches
        return leftBacklog ? .release : .fetchAgain
    }
}
