/// What to do with one fetched batch: the Redis commands that push its valid jobs, the ids to
/// mark enqueued once Redis has them, and the rows that cannot be relayed, with the reason.
///
/// The rule that matters: ``markIDs`` may only be marked after ``pushCommands`` succeeded.
public struct BatchPlan: Sendable, Equatable {
    public struct Rejection: Sendable, Equatable {
        public let id: Int64
        public let reason: String
    }

    public let pushCommands: [RedisCommand]
    public let markIDs: [Int64]
    public let rejections: [Rejection]
    /// The rows whose jobs went to `schedule` rather than a queue.
    public let scheduledIDs: [Int64]

    /// Plans the push of `rows` (in `id` order). Jobs of one queue go into a single LPUSH in row
    /// order, so Sidekiq's BRPOP takes them first-in first-out; the whole push is one MULTI/EXEC
    /// transaction, so Redis holds all of the batch or none of it.
    public init(
        rows: [OutboxRow], encoder: SidekiqJobEncoder, keys: SidekiqKeys, nowMicros: Int64,
        makeJID: () -> String
    ) {
        var queueOrder: [String] = []
        var queued: [String: [[UInt8]]] = [:]
        var schedule: [[UInt8]] = []
        var scheduledIDs: [Int64] = []
        var markIDs: [Int64] = []
        var rejections: [Rejection] = []
        for row in rows {
            do {
                let job = try encoder.encode(row, nowMicros: nowMicros, makeJID: makeJID)
                markIDs.append(row.id)
                switch job.placement {
                case .immediate:
                    if queued[job.queue] == nil { queueOrder.append(job.queue) }
                    queued[job.queue, default: []].append(job.json)
                case .scheduled(let score):
                    scheduledIDs.append(row.id)
                    schedule.append(Array(score.utf8))
                    schedule.append(job.json)
                }
            } catch {
                rejections.append(Rejection(id: row.id, reason: error.reason))
            }
        }
        var commands: [RedisCommand] = []
        if !queueOrder.isEmpty {
            commands.append(RedisCommand([Array("SADD".utf8), Array(keys.queues.utf8)] + queueOrder.map { Array($0.utf8) }))
            for queue in queueOrder {
                commands.append(RedisCommand([Array("LPUSH".utf8), Array(keys.queue(queue).utf8)] + queued[queue]!))
            }
        }
        if !schedule.isEmpty {
            commands.append(RedisCommand([Array("ZADD".utf8), Array(keys.schedule.utf8)] + schedule))
        }
        if !commands.isEmpty {
            commands = [RedisCommand("MULTI")] + commands + [RedisCommand("EXEC")]
        }
        self.pushCommands = commands
        self.markIDs = markIDs
        self.rejections = rejections
        self.scheduledIDs = scheduledIDs
    }
}
