import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// sidekiq-reliable_job's own enqueuer beside the relay: both take the gem's with_advisory_lock
/// pair, so no job is pushed twice.
@Suite(.serialized) struct GemEnqueuerTests {
    static let lock = ReliableJobGemLock(prefix: nil)

    static func job(_ n: Int) -> String {
        #"{"class":"RecordJob","queue":"reliable","args":[\#(n)],"jid":"\#(String(format: "%024x", n))","retry":true}"#
    }

    @Test func skipsTheTableWhileTheGemsEnqueuerHoldsItsLock() throws {
        let outbox = try TestOutbox(layout: .reliableJob)
        defer { outbox.drop() }
        let gem = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        _ = try gem.query(SQLStatement("SELECT pg_advisory_lock(1418162288, 0)"))
        try outbox.insert((1...5).map { (.null, Self.job($0)) })
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("the relay found the gem's lock taken, twice") {
            relay.logs.lines.filter { $0.contains("sidekiq-reliable_job's own enqueuer holds its lock") }.count >= 2
        }
        #expect(try outbox.pendingCount() == 5)
        #expect(try outbox.queue("reliable").isEmpty)

        _ = try gem.query(SQLStatement("SELECT pg_advisory_unlock(1418162288, 0)"))
        try waitUntil("rows relayed once the gem let go") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.queue("reliable").count == 5)
    }

    /// The gem's enqueuer as it polls: in a transaction that took `pg_try_advisory_xact_lock` on
    /// the pair, push the pending rows and mark them. Racing the relay over 2,000 rows, every job
    /// is in Redis exactly once.
    @Test func neverPushesAJobTwiceBesideTheGemsEnqueuer() throws {
        let outbox = try TestOutbox(layout: .reliableJob)
        defer { outbox.drop() }
        let count = 2000
        try outbox.insert((1...count).map { (.null, Self.job($0)) })
        let relay = RelayRunner(outbox.configuration(batchSize: 10))
        let gem = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        let redis = try RedisConnection(endpoint: outbox.redisEndpoint, timeout: 5)
        var gemPushed = 0
        let deadline = Date(timeIntervalSinceNow: 60)
        while try outbox.pendingCount() > 0 && Date() < deadline {
            try gem.execute("BEGIN")
            if try gem.query(SQLStatement("SELECT pg_try_advisory_xact_lock(1418162288, 0)")).bool(0, 0) == true {
                let rows = try gem.query(SQLStatement(
                    "SELECT id, payload::text FROM \(outbox.table.quoted) WHERE status = 'pending' ORDER BY id LIMIT 20"))
                if rows.count > 0 {
                    let payloads = (0..<rows.count).map { Array(rows.text($0, 1)!.utf8) }
                    _ = try redis.send([RedisCommand([Array("LPUSH".utf8), Array("queue:reliable".utf8)] + payloads)])
                    let ids = (0..<rows.count).map { String(rows.int64($0, 0)!) }.joined(separator: ",")
                    try gem.execute("UPDATE \(outbox.table.quoted) SET status = 'enqueued', enqueued_at = now() WHERE id IN (\(ids))")
                    gemPushed += rows.count
                }
            }
            try gem.execute("COMMIT")
            // The gem polls; without any pause between polls its lock is free only for the
            // moment between COMMIT and the next BEGIN, and the relay may never get a turn.
            Thread.sleep(forTimeInterval: 0.002)
        }
        #expect(relay.finish())
        let jids = try outbox.queue("reliable").map { payload in
            (try JSONSerialization.jsonObject(with: Data(payload.utf8)) as! [String: Any])["jid"] as! String
        }
        #expect(jids.count == count, "every job once: \(jids.count) in Redis, \(gemPushed) pushed by the gem's enqueuer")
        #expect(Set(jids).count == count)
        #expect(gemPushed > 0 && gemPushed < count, "both took turns: the gem's enqueuer pushed \(gemPushed)")
    }
}

/// sidekiq-reliable_job's scheduled jobs (`perform_in`, `perform_at`) with the gem's middleware
/// installed: the relay keeps them in the table and pushes them to their queue when due, so
/// Sidekiq's scheduler never hands them to the middleware a second time.
@Suite(.serialized) struct ReliableJobScheduleTests {
    @Test func runsScheduledJobsStagedByTheGemsMiddlewareOnceAndOnTime() throws {
        let outbox = try TestOutbox(layout: .reliableJob)
        defer { outbox.drop() }
        // The gem's migration makes jid unique.
        try outbox.postgres.execute("CREATE UNIQUE INDEX \(outbox.table.name)_gem_jid ON \(outbox.table.quoted) (jid)")
        let sidekiq = SidekiqServer(
            redisURL: outbox.redisURL, environment: ["RELIABLE_JOB_TABLE": outbox.table.quoted, "DATABASE_URL": outbox.servers.databaseURL])
        try sidekiq.start(queues: ["default"])
        defer { sidekiq.stop() }

        let staged = Date().timeIntervalSince1970
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/ruby")
        client.arguments = ["-r", SidekiqServer.harness, "-e", "RecordJob.perform_in(3, 1); RecordJob.perform_async(2); RecordJob.perform_at(Time.now + 1.5, 3)"]
        client.environment = sidekiq.environment
        try client.run()
        client.waitUntilExit()
        #expect(client.terminationStatus == 0)
        let rows = try outbox.postgres.query(SQLStatement("SELECT payload->>'at' FROM \(outbox.table.quoted) ORDER BY id"))
        // The relay starts once the rows are staged: job 2, relayed and run at once, would have
        // its row deleted by the server middleware before they could be counted.
        try #require(rows.count == 3, "the middleware staged all three")
        let dueAt = [1: Double(rows.text(0, 0) ?? "") ?? 0, 3: Double(rows.text(2, 0) ?? "") ?? 0]
        #expect(dueAt[1]! > staged + 2.5 && dueAt[3]! > staged + 1)
        let relay = RelayRunner(outbox.configuration())
        defer { relay.finish() }

        let runs = try sidekiq.waitForRuns(3, client: outbox.redis, seconds: 30)
        #expect(runs.map { ($0.args[0] as! NSNumber).intValue } == [2, 3, 1], "once each, the later ones when due")
        for run in runs {
            let n = (run.args[0] as! NSNumber).intValue
            if let due = dueAt[n] { #expect(run.ranAt >= due, "job \(n) ran at \(run.ranAt), due at \(due)") }
        }
        try waitUntil("every completed job's row deleted by the server middleware") {
            try outbox.postgres.query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted)")).int64(0, 0) == 0
        }
        let after = try sidekiq.inspect()
        #expect((after["scheduled"] as? [Any])?.isEmpty == true)
        #expect(after["retries"] as? Int == 0)
        #expect(after["dead"] as? Int == 0)
    }
}
