/// What to do with one fetched batch: the jobs to push, per queue and to the schedule, the ids to
/// mark enqueued once Redis has them, and the rows that cannot be relayed, with the reason.
///
/// The rule that matters: ``markIDs`` may only be marked after the push of ``pushedIDs``
/// succeeded (see ``FencedPush``).
public struct BatchPlan: Sendable, Equatable {
    public struct Rejection: Sendable, Equatable {
        public let id: Int64
        public let reason: String
    }

    /// One queue's jobs, in row order.
    public struct QueuedJobs: Sendable, Equatable {
        public let queue: String
        public var jobs: [[UInt8]]
    }

    /// Jobs for `LPUSH`, queue by queue in order of first appearance.
    public let queued: [QueuedJobs]
    /// `(score, json)` pairs for `ZADD schedule`.
    public let scheduled: [(score: String, json: [UInt8])]
    /// Rows whose jobs this batch pushes.
    public let pushedIDs: [Int64]
    /// The same rows with their stamps, as the fence's record names them.
    public let pushedRows: RecordedRows
    /// Every row to mark: those pushed now and those Redis already had (`alreadyPushed`).
    public let markIDs: [Int64]
    /// The rows (pushed now or before) whose jobs went to `schedule` rather than a queue.
    public let scheduledIDs: [Int64]
    public let rejections: [Rejection]

    /// Plans the push of `rows` (in `id` order). Jobs of one queue go into a single LPUSH in row
    /// order, so Sidekiq's BRPOP takes them first-in first-out. Rows in `alreadyPushed` (pushed
    /// by an earlier holder of the lease, which died before marking them) are only marked.
    ///
    /// Each row's payload is let go as soon as its job is encoded, so a batch of large payloads
    /// is held about once, not twice, when the caller hands its rows over.
    public init(
        rows: consuming [OutboxRow], encoder: SidekiqJobEncoder, nowMicros: Int64, alreadyPushed: RecordedRows = [],
        makeJID: () -> String
    ) {
        var rows = rows
        var queued: [QueuedJobs] = []
        // Queue names are bytes: Swift's String equality would merge `café` in NFC and NFD.
        var queueIndex: [[UInt8]: Int] = [:]
        var lastQueue: Int?
        var scheduled: [(score: String, json: [UInt8])] = []
        var pushedIDs: [Int64] = []
        var pushedRows: RecordedRows = []
        var markIDs: [Int64] = []
        var scheduledIDs: [Int64] = []
        var rejections: [Rejection] = []
        for index in rows.indices {
            let row = rows[index]
            rows[index] = OutboxRow(id: row.id, payload: [], createdAtMicros: row.createdAtMicros)
            let job: SidekiqJob
            do {
                job = try encoder.encode(row, nowMicros: nowMicros, makeJID: makeJID)
            } catch {
                rejections.append(Rejection(id: row.id, reason: error.reason))
                continue
            }
            markIDs.append(row.id)
            if case .scheduled = job.placement { scheduledIDs.append(row.id) }
            // The very row an earlier holder pushed (same id, same stamp) is only marked.
            guard !alreadyPushed.contains(row) else { continue }
            pushedIDs.append(row.id)
            pushedRows.insert(row)
            switch job.placement {
            case .immediate:
                // Rows in a row mostly share a queue: the previous row's is tried first.
                if let last = lastQueue, queued[last].queue.hasSameBytes(as: job.queue) {
                    queued[last].jobs.append(job.json)
                    continue
                }
                let name = Array(job.queue.utf8)
                if let index = queueIndex[name] {
                    queued[index].jobs.append(job.json)
                    lastQueue = index
                } else {
                    queueIndex[name] = queued.count
                    lastQueue = queued.count
                    queued.append(QueuedJobs(queue: job.queue, jobs: [job.json]))
                }
            case .scheduled(let score):
                scheduled.append((score, job.json))
            }
        }
        self.queued = queued
        self.scheduled = scheduled
        self.pushedIDs = pushedIDs
        self.pushedRows = pushedRows
        self.markIDs = markIDs
        self.scheduledIDs = scheduledIDs
        self.rejections = rejections
    }

    public static func == (lhs: BatchPlan, rhs: BatchPlan) -> Bool {
        lhs.queued.elementsEqual(rhs.queued, by: { $0.queue.utf8.elementsEqual($1.queue.utf8) && $0.jobs == $1.jobs }) && lhs.scheduled.elementsEqual(rhs.scheduled, by: { $0.score == $1.score && $0.json == $1.json })
            && lhs.pushedIDs == rhs.pushedIDs && lhs.markIDs == rhs.markIDs && lhs.scheduledIDs == rhs.scheduledIDs
            && lhs.rejections == rhs.rejections
    }
}
