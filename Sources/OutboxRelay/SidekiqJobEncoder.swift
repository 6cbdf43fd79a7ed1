/// Turns a stored payload into the job Sidekiq's client would have written, touching only the
/// fields it must: `enqueued_at` is set (or, for a job scheduled in the future, `at` and
/// `enqueued_at` are removed), a missing `jid` or `created_at` is added, and every other byte of
/// the payload passes through unchanged.
public struct SidekiqJobEncoder: Sendable {
    public var timestamps: TimestampStyle
    public var maximumPayloadBytes: Int

    public init(timestamps: TimestampStyle = .float, maximumPayloadBytes: Int = 10 * 1024 * 1024) {
        self.timestamps = timestamps
        self.maximumPayloadBytes = maximumPayloadBytes
    }

    /// Encodes `row`; `nowMicros` decides whether an `at` is still in the future, and `makeJID`
    /// supplies a jid (24 hex characters) when the payload has none.
    public func encode(_ row: OutboxRow, nowMicros: Int64, makeJID: () -> String) throws(RejectedPayload) -> SidekiqJob {
        if let problem = row.problem { throw RejectedPayload(problem) }
        guard row.payload.count <= maximumPayloadBytes else {
            throw RejectedPayload(
                "payload is \(row.payload.count) bytes, more than --max-payload-bytes \(maximumPayloadBytes)")
        }
        let scan: JSONObjectScan
        do {
            scan = try JSONObjectScan(row.payload)
        } catch {
            throw RejectedPayload("payload is not a JSON object: \(error)")
        }
        guard let queueMember = scan.member("queue"), let queue = scan.string(queueMember), !queue.isEmpty else {
            throw RejectedPayload("payload has no \"queue\" string")
        }
        guard let classMember = scan.member("class"), let jobClass = scan.string(classMember), !jobClass.isEmpty else {
            throw RejectedPayload("payload has no \"class\" string")
        }
        if let args = scan.member("args"), args.kind != .array {
            throw RejectedPayload("payload's \"args\" is not an array")
        }
        var scheduledAt: String?
        var dropAt = false
        if let at = scan.member("at") {
            guard let seconds = scan.number(at), seconds.isFinite else {
                throw RejectedPayload("payload's \"at\" is not a number")
            }
            dropAt = true
            if seconds * 1_000_000 > Double(nowMicros) {
                scheduledAt = String(decoding: scan.bytes[at.valueRange], as: UTF8.self)
            }
        }

        var edit = JSONObjectEdit(scan)
        if dropAt { edit.remove("at") }
        if scan.member("jid") == nil { edit.set("jid", "\"\(row.jid.map(JSONText.escaped) ?? makeJID())\"") }
        let createdAt = timestamps.format(micros: row.createdAtMicros)
        if scan.member("created_at") == nil { edit.set("created_at", createdAt) }
        if scheduledAt == nil {
            edit.set("enqueued_at", createdAt)
        } else {
            edit.remove("enqueued_at")
        }
        let placement: SidekiqJob.Placement = scheduledAt.map { .scheduled(score: $0) } ?? .immediate
        return SidekiqJob(queue: queue, placement: placement, json: edit.apply())
    }
}
