import Testing

@testable import OutboxRelay

@Suite struct BatchPlanTests {
    func row(_ id: Int64, _ payload: String) -> OutboxRow {
        OutboxRow(id: id, payload: Array(payload.utf8), createdAtMicros: 1_000_000)
    }

    func job(_ queue: String, _ n: Int) -> String {
        #"{"class":"J","queue":"\#(queue)","jid":"\#(n)"}"#
    }

    func pushed(_ queue: String, _ n: Int) -> [UInt8] {
        Array(#"{"class":"J","queue":"\#(queue)","jid":"\#(n)","created_at":1.0,"enqueued_at":1.0}"#.utf8)
    }

    @Test func groupsJobsPerQueueInRowOrderInsideOneTransaction() {
        let rows = [row(1, job("a", 1)), row(2, job("b", 2)), row(3, job("a", 3)), row(4, "oops"), row(5, job("a", 5))]
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), keys: SidekiqKeys(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.pushCommands == [
            RedisCommand("MULTI"),
            RedisCommand("SADD", "queues", "a", "b"),
            RedisCommand([Array("LPUSH".utf8), Array("queue:a".utf8), pushed("a", 1), pushed("a", 3), pushed("a", 5)]),
            RedisCommand([Array("LPUSH".utf8), Array("queue:b".utf8), pushed("b", 2)]),
            RedisCommand("EXEC"),
        ])
        #expect(plan.markIDs == [1, 2, 3, 5])
        #expect(plan.rejections == [.init(id: 4, reason: "payload is not a JSON object: expected a JSON object at byte 0")])
    }

    @Test func schedulesFutureJobsAndPrefixesANamespace() {
        let future = #"{"class":"J","queue":"a","jid":"1","at":3.5}"#
        let plan = BatchPlan(
            rows: [row(1, future), row(2, job("a", 2))], encoder: SidekiqJobEncoder(), keys: SidekiqKeys(namespace: "ns"),
            nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.pushCommands == [
            RedisCommand("MULTI"),
            RedisCommand("SADD", "ns:queues", "a"),
            RedisCommand([Array("LPUSH".utf8), Array("ns:queue:a".utf8), pushed("a", 2)]),
            RedisCommand([Array("ZADD".utf8), Array("ns:schedule".utf8), Array("3.5".utf8), Array(#"{"class":"J","queue":"a","jid":"1","created_at":1.0}"#.utf8)]),
            RedisCommand("EXEC"),
        ])
        #expect(plan.scheduledIDs == [1])
        #expect(plan.markIDs == [1, 2])
    }

    @Test func pushesNothingWhenEveryRowIsRejected() {
        let plan = BatchPlan(rows: [row(9, "{}")], encoder: SidekiqJobEncoder(), keys: SidekiqKeys(), nowMicros: 0, makeJID: { "x" })
        #expect(plan.pushCommands.isEmpty)
        #expect(plan.markIDs.isEmpty)
        #expect(plan.rejections.map(\.id) == [9])
    }
}
