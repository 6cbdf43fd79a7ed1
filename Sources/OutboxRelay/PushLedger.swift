/// The rows of one lease that Redis has and PostgreSQL may not have marked yet, which the fence's
/// record (``FencedPush``) must always cover, so that whoever holds the lease next marks them
/// instead of pushing them twice.
///
/// With the mark of one batch in flight while the next is pushed, that is more than the last
/// batch: rows an earlier holder pushed (until they are marked or found not pending), the batch
/// whose mark is in flight, and the batch being pushed. The record may hold more than that (rows
/// already marked are harmless: they are no longer fetched), never less.
public struct PushLedger: Sendable, Equatable {
    /// An earlier holder's rows not yet marked or found gone; only these can leave the ledger
    /// without a mark, so only these are checked against each fetch.
    private var inherited: RecordedRows
    /// Rows this lease pushed whose mark has not committed.
    private var pushedUnmarked: RecordedRows = []

    /// Rows in Redis whose mark is not confirmed.
    public var unmarked: RecordedRows { inherited.union(pushedUnmarked) }

    /// Starts a lease with the rows an earlier holder pushed, from the fence's record.
    public init(alreadyPushed: RecordedRows) {
        inherited = alreadyPushed
    }

    /// The record to write with the push of `plan`, in no particular order (its rows are new to
    /// the ledger: a lease fetches each row once, and rows already pushed are not pushed again).
    public func record(pushing plan: BatchPlan) -> RecordedRows {
        // One copy on the hot path: the batch's rows and the in-flight ones added to the inherited.
        var record = inherited
        record.formUnion(pushedUnmarked)
        record.formUnion(plan.pushedRows)
        return record
    }

    /// The record to leave when the lease ends: empty when every row is marked.
    public var remaining: RecordedRows { unmarked }

    /// After a fetch of the rows after `after` (every pending row when nil) that returned `ids`:
    /// the earlier holder's rows in that range that did not come back are no longer pending, so
    /// they are marked or dead-lettered already. With `drained`, nothing is pending past `ids`.
    public mutating func fetched(_ ids: [Int64], after: Int64?, drained: Bool) {
        guard !inherited.isEmpty else { return }
        let upTo = drained ? Int64.max : (ids.last ?? Int64.min)
        let returned = Set(ids)
        inherited.keep { id in
            let inRange = id > (after ?? Int64.min) && id <= upTo
            return !inRange || returned.contains(id)
        }
    }

    /// After the push of `plan` succeeded.
    public mutating func pushed(_ plan: BatchPlan) {
        pushedUnmarked.formUnion(plan.pushedRows)
    }

    /// After the mark of `ids` committed.
    public mutating func marked(_ ids: [Int64]) {
        if !inherited.isEmpty { inherited.remove(ids: ids) }
        pushedUnmarked.remove(ids: ids)
    }
}
