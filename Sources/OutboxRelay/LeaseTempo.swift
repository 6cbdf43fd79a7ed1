/// Decides, batch by batch, whether to keep a lease or release it: a key is released as soon as
/// a fetch comes back short (nothing more is pending) or after `maximumBatches`, so that other
/// keys, and other instances, get their turn.
public struct LeaseTempo: Sendable, Equatable {
    public enum Next: Sendable, Equatable {
        case fetchAgain
        case release
    }

    public let maximumBatches: Int
    public private(set) var batches = 0

    public init(maximumBatches: Int) {
        self.maximumBatches = maximumBatches
    }

    /// Call after each batch with how many rows the fetch returned and how many it asked for.
    public mutating func afterBatch(fetched: Int, limit: Int) -> Next {
        batches += 1
        if fetched < limit || batches >= maximumBatches { return .release }
        return .fetchAgain
    }
}
