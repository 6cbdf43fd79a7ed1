import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Relayed jobs run in a real Sidekiq (Debian's ruby-sidekiq 6.4): once each, arguments intact,
/// first-in first-out per queue, scheduled ones on time.
@Suite(.serialized) struct SidekiqTests {
    static let bigArgument = String(repeating: "x", count: 20_000)

    /// Job `n` of `queue`: unicode, nested and large arguments, ActiveJob-style and custom fields;
    /// every fifth one has no jid, so the relay must add one.
    static func job(_ queue: String, _ n: Int, extra: String = "") -> String {
        let jid = n % 5 == 0 ? "" : #""jid":"\#(String(format: "%024x", n))","#
        let args = n == 7 ? #"[\#(n),"\#(bigArgument)"]"# : #"[\#(n),"ünïcödé ✓ 日本",{"nested":[1,2.5,null,true,"q\"uote"]}]"#
        return #"{\#(jid)"class":"RecordJob","queue":"\#(queue)","args":\#(args),"retry":false,"tags":["outbox"],"wrapped":"SomeActiveJob","custom_key":{"k":"v"}\#(extra)}"#
    }

    static func args(_ payload: String) -> NSArray {
        (try! JSONSerialization.jsonObject(with: Data(payload.utf8)) as! [String: Any])["args"] as! NSArray
    }

    @Test func runsEveryRelayedJobOnceInOrderWithItsArguments() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let queues = ["alpha", "beta"]
        var payloads: [(String, Int, String)] = []
        for n in 0..<200 {
            let queue = queues[n % 2]
            payloads.append((queue, n, Self.job(queue, n)))
        }
        try outbox.insert(payloads.map { (.named($0.0), $0.2) }, createdAt: nil)
        let relay = RelayRunner(outbox.configuration(batchSize: 30))
        try waitUntil("all rows relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())

        let sidekiq = SidekiqServer(redisURL: outbox.redisURL)
        let before = try sidekiq.inspect()
        let seen = before["queues"] as! [String: [String: Any]]
        #expect(Set(seen.keys) == Set(queues), "Sidekiq::Queue.all sees both queues")
        for queue in queues {
            #expect(seen[queue]?["size"] as? Int == 100)
            let latency = seen[queue]?["latency"] as? Double ?? -1
            #expect(latency >= 0 && latency < 60, "latency of \(queue) is sane: \(latency)")
        }

        try sidekiq.start(queues: queues)
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(200, client: outbox.redis)
        #expect(runs.count == 200, "every job ran exactly once")
        #expect(Set(runs.map(\.jid)).count == 200, "every run has its own jid")
        #expect(runs.allSatisfy { $0.jid.count == 24 && $0.jid.allSatisfy(\.isHexDigit) })
        for queue in queues {
            let ran = runs.filter { $0.queue == queue }
            let expected = payloads.filter { $0.0 == queue }
            #expect(ran.map { ($0.args[0] as! NSNumber).intValue } == expected.map(\.1), "\(queue) ran first-in first-out")
            for (run, payload) in zip(ran, expected) {
                #expect(run.args == Self.args(payload.2), "arguments of job \(payload.1) arrived intact")
                #expect(run.className == "RecordJob")
                if payload.1 % 5 != 0 { #expect(run.jid == String(format: "%024x", payload.1)) }
            }
        }
        let after = try sidekiq.inspect()
        #expect(after["retries"] as? Int == 0)
        #expect(after["dead"] as? Int == 0)
    }

    @Test func runsScheduledJobsNoEarlierThanTheirTime() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let at = Date().timeIntervalSince1970 + 4
        try outbox.insert([
            (.named("timed"), Self.job("timed", 1, extra: #","at":\#(at)"#)),
            (.named("timed"), Self.job("timed", 2, extra: #","at":1600000000.5"#)),
        ], createdAt: nil)
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("rows relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())

        let sidekiq = SidekiqServer(redisURL: outbox.redisURL)
        let scheduled = try sidekiq.inspect()["scheduled"] as! [[String: Any]]
        #expect(scheduled.count == 1)
        #expect(abs((scheduled.first?["at"] as? Double ?? 0) - at) < 0.001, "the schedule score is the job's at")
        #expect(try outbox.queue("timed").count == 1, "a past at is pushed at once")

        try sidekiq.start(queues: ["timed"])
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(2, client: outbox.redis, seconds: 30)
        #expect(runs.count == 2)
        let future = try #require(runs.first { ($0.args[0] as! NSNumber).intValue == 1 })
        let past = try #require(runs.first { ($0.args[0] as! NSNumber).intValue == 2 })
        #expect(future.ranAt >= at, "ran at \(future.ranAt), scheduled for \(at)")
        #expect(past.ranAt < at)
    }

    @Test func worksWithRedisNamespace() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert((0..<10).map { (.named("spaced"), Self.job("spaced", $0)) }, createdAt: nil)
        var configuration = outbox.configuration()
        configuration.keys = SidekiqKeys(namespace: "myapp")
        let relay = RelayRunner(configuration)
        try waitUntil("rows relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.set("myapp:queues") == ["spaced"], "set members carry no prefix")
        let length = try outbox.redis.send([RedisCommand("LLEN", "myapp:queue:spaced")])[0]
        #expect(length == .integer(10))

        let sidekiq = SidekiqServer(redisURL: outbox.redisURL, namespace: "myapp")
        try sidekiq.start(queues: ["spaced"])
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(10, client: outbox.redis)
        #expect(runs.map { ($0.args[0] as! NSNumber).intValue } == Array(0..<10))
    }

    @Test func servesTheReliableJobLayout() throws {
        let outbox = try TestOutbox(layout: .reliableJob)
        defer { outbox.drop() }
        let at = Date().timeIntervalSince1970 + 600
        let ids = try outbox.insert(
            (0..<20).map { (.null, Self.job("reliable", $0 + 1)) } + [(.null, Self.job("reliable", 99, extra: #","at":\#(at)"#))],
            createdAt: nil)
        let relay = RelayRunner(outbox.configuration(batchSize: 7))
        try waitUntil("rows relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        let statuses = try outbox.postgres.query(SQLStatement(
            "SELECT id, status, enqueued_at IS NOT NULL FROM \(outbox.table.quoted) ORDER BY id"))
        #expect((0..<statuses.count).map { statuses.int64($0, 0)! } == ids, "rows are never deleted")
        #expect((0..<statuses.count).map { statuses.text($0, 1)! } == Array(repeating: "enqueued", count: 20) + ["scheduled"])
        #expect((0..<statuses.count).map { statuses.bool($0, 2) == true } == Array(repeating: true, count: 20) + [false],
            "the future job is kept in the table until it is due")
        #expect(try outbox.redis.send([RedisCommand("ZCARD", "schedule")])[0] == .integer(0))

        // A payload without jid gets the row's jid column, which the gem's middleware looks up.
        let jids = try outbox.postgres.query(SQLStatement("SELECT jid FROM \(outbox.table.quoted) ORDER BY id"))
        let sidekiq = SidekiqServer(redisURL: outbox.redisURL)
        try sidekiq.start(queues: ["reliable"])
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(20, client: outbox.redis)
        #expect(runs.map { ($0.args[0] as! NSNumber).intValue } == Array(1...20))
        #expect(runs.map(\.jid) == (0..<20).map { jids.text($0, 0)! })
    }
}
