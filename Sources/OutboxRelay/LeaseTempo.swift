/// Decides, page by page, how many rows to fetch, how many to push at once, and whether to keep a
/// lease: the first fetch of a lease asks for few rows (a trickle is pushed at once, without
/// waiting for a big page), each full page quadruples the next, up to the page size; a key is
/// released as soon as a fetch finds fewer rows pending than it asked for, or after
/// `maximumBatches` full pages, so that other keys, and other instances, get their turn.
///
/// A page is pushed to Redis in chunks of at most `batchSize` rows (`--batch-size`, the most rows
/// per push transaction), and marked in one statement: so a small batch size does not make
/// PostgreSQL wait on one round trip per 100 rows.
///
/// A lease that relayed rows and then found its key drained may *linger* (``Next/linger``): wait a
/// moment for a notification and fetch again at once, instead of paying the release, lease and
/// claim round trips on every wake-up of a key that keeps receiving rows. At most `lingers` times
/// per lease, so the key is given up within a bounded time; never with `maximumBatches: 1`.
public struct LeaseTempo: Sendable, Equatable {
    public static let firstLimit = 10

    public enum Next: Sendable, Equatable {
        case fetchAgain
        case release
        /// Wait for a notification, then fetch again; release when none comes.
        case linger
    }

    public let maximumBatches: Int
    /// The most rows pushed to Redis at once.
    public let batchSize: Int
    /// The most rows fetched at once (at least `batchSize`).
    public let pageSize: Int
    public private(set) var batches = 0
    /// How many more times this lease may linger.
    public private(set) var lingersLeft: Int
    /// How many rows the next fetch asks for.
    public private(set) var limit: Int

    /// `carriedLimit` is the limit a previous lease on the same key reached when it let go of a
    /// key that still had a backlog, so a busy key does not climb from small pages every lease.
    /// `pageSize` (default: `batchSize`) is the most rows per fetch; `lingers` (default: none)
    /// how many times a drained lease may wait for a notification before it lets go.
    public init(maximumBatches: Int, batchSize: Int, carriedLimit: Int? = nil, pageSize: Int? = nil, lingers: Int = 0) {
        self.maximumBatches = maximumBatches
        self.batchSize = batchSize
        self.pageSize = max(batchSize, pageSize ?? batchSize)
        self.lingersLeft = maximumBatches > 1 ? max(0, lingers) : 0
        self.limit = min(self.pageSize, carriedLimit ?? Self.firstLimit)
    }

    /// Whether the last page left rows behind, so the next lease can start at ``limit``.
    public private(set) var leftBacklog = false

    /// Call after each page with how many rows were pending within the fetch's limit.
    public mutating func afterBatch(available: Int) -> Next {
        batches += 1
        leftBacklog = false
        if available < limit { return lingerOrRelease() }
        limit = min(pageSize, limit * 4)
        leftBacklog = batches >= maximumBatches
        return leftBacklog ? .release : .fetchAgain
    }

    /// Call after a fetch found nothing pending: a lease that relayed rows may linger again.
    public mutating func afterEmptyFetch() -> Next {
        leftBacklog = false
        return batches > 0 ? lingerOrRelease() : .release
    }

    private mutating func lingerOrRelease() -> Next {
        guard lingersLeft > 0 else { return .release }
        lingersLeft -= 1
        return .linger
    }
}
