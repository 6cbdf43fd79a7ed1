import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// The delivery promise under the errors an adversarial operator found (issue 11): a batch Redis
/// refuses stays pending whole, databases sharing a Redis database do not fence each other, queue
/// names are bytes, no created_at crashes the relay, and a restored database does not stall it.
@Suite(.serialized) struct DeliveryPromiseTests {
    static func job(_ queue: String, _ n: Int, at: Double? = nil) -> String {
        let at = at.map { #","at":\#($0)"# } ?? ""
        return #"{"class":"J","args":[\#(n)],"queue":"\#(queue)","jid":"\#(String(format: "%024x", n))"\#(at)}"#
    }

    /// The jids in a queue, in the order Sidekiq runs them.
    static func jids(_ jobs: [String]) -> [Int] {
        jobs.compactMap { job in
            guard let range = job.range(of: #""jid":""#) else { return nil }
            return Int(job[range.upperBound...].prefix(24), radix: 16)
        }
    }

    static func refusals(_ relay: RelayRunner) -> [String] {
        relay.logs.lines.filter { $0.contains("Redis refused a batch of the split key") }
    }

    @Test func aWrongTypedQueueKeyKeepsTheWholeBatchPendingAndOtherKeysFlow() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        _ = try outbox.redis.send([RedisCommand("SET", "queue:b", "notalist")])
        try outbox.insert((0..<10).map { (.named("k"), Self.job($0 % 2 == 0 ? "a" : "b", $0)) })
        let relay = RelayRunner(outbox.configuration())
        defer { relay.finish() }
        try outbox.insert((10..<13).map { (.named("other"), Self.job("c", $0)) })
        try waitUntil("the other key relayed") { try outbox.queue("c").count == 3 }
        try waitUntil("the refused batch retried twice") { Self.refusals(relay).count >= 3 }

        #expect(try outbox.pendingCount() == 10, "nothing of the refused batch is marked")
        #expect(try outbox.queue("a") == [], "nothing of the refused batch is in Redis")
        #expect(try outbox.redis.send([RedisCommand("GET", "queue:b")])[0] == .bulk(Array("notalist".utf8)))
        let errors = Self.refusals(relay).filter { $0.contains(" error ") }
        #expect(errors.count == 1, "logged once, then only at debug level: \(errors)")
        #expect(errors.first?.contains("'queue:b' holds a string, not a list") == true)

        _ = try outbox.redis.send([RedisCommand("DEL", "queue:b")])
        try waitUntil("the batch relayed once the key is fixed") { try outbox.pendingCount() == 0 }
        #expect(Self.jids(try outbox.queue("a")) == [0, 2, 4, 6, 8])
        #expect(Self.jids(try outbox.queue("b")) == [1, 3, 5, 7, 9])
        #expect(try outbox.set("queues") == ["a", "b", "c"])
        // Logged when the lease ends, which may linger a moment after its last mark.
        try waitUntil("the relay says Redis takes the key again") {
            relay.logs.lines.contains { $0.contains("Redis takes the split key's batches again") }
        }
    }

    @Test func aWrongTypedScheduleKeepsTheWholeBatchPending() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        _ = try outbox.redis.send([RedisCommand("SET", "schedule", "oops")])
        try outbox.insert([(.named("k"), Self.job("a", 1)), (.named("k"), Self.job("a", 2, at: 4e9)), (.named("k"), Self.job("a", 3))])
        let relay = RelayRunner(outbox.configuration())
        defer { relay.finish() }
        try waitUntil("the batch refused") { !Self.refusals(relay).isEmpty }
        #expect(try outbox.pendingCount() == 3)
        #expect(try outbox.queue("a") == [])
        #expect(Self.refusals(relay).first?.contains("'schedule' holds a string, not a zset") == true)

        _ = try outbox.redis.send([RedisCommand("DEL", "schedule")])
        try waitUntil("the batch relayed once the key is fixed") { try outbox.pendingCount() == 0 }
        #expect(Self.jids(try outbox.queue("a")) == [1, 3])
        #expect(try outbox.redis.send([RedisCommand("ZCARD", "schedule")])[0] == .integer(1))
    }

    /// Over 8,000 queues in one batch: an unbounded `unpack` of the queue names failed after the
    /// LPUSHes, and the batch's scheduled job was marked without reaching `schedule`.
    @Test func aBatchOfThousandsOfQueuesIsPushedWhole() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        // Leases start at 10 rows and quadruple up to --batch-size: the sixth batch holds 10,000.
        let count = 13_410
        let scheduled = 13_000
        try outbox.insert((0..<count).map { n in (.named("k"), Self.job("q\(n)", n, at: n == scheduled ? 4e9 : nil)) })
        let relay = RelayRunner(outbox.configuration(batchSize: 10_000))
        try waitUntil("all rows marked", seconds: 60) { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.set("queues").count == count - 1)
        #expect(try outbox.redis.send([RedisCommand("ZCARD", "schedule")])[0] == .integer(1))
        for n in [0, 3_409, 3_410, 9_000, 12_999, 13_409] {
            #expect(Self.jids(try outbox.queue("q\(n)")) == [n])
        }
        #expect(Self.refusals(relay) == [])
    }

    /// Advisory locks are per database; fences and records must be too, or two apps on one
    /// cluster with the same table and split key mark each other's ids as pushed.
    @Test func twoDatabasesOfOneClusterShareARedisDatabase() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let (secondURL, second) = try outbox.otherDatabase("second")

        let rows = 6_000
        try outbox.insert((0..<rows).map { (.named("default"), Self.job("one", $0)) })
        let payloads = (0..<rows).map { Self.job("two", $0) }.map { "\"\($0.replacingOccurrences(of: "\"", with: "\\\""))\"" }
        _ = try second.query(
            SQLStatement(
                """
                INSERT INTO \(outbox.table.quoted) (split_key, format, payload, created_at) \
                SELECT 'default', 'sidekiq5', convert_to(p, 'UTF8'), now() FROM unnest($1::text[]) WITH ORDINALITY AS u(p, n) ORDER BY n
                """, ["{\(payloads.joined(separator: ","))}"]))

        var secondConfiguration = outbox.configuration(batchSize: 50)
        secondConfiguration.databaseURL = secondURL
        let relays = [RelayRunner(outbox.configuration(batchSize: 50)), RelayRunner(secondConfiguration)]
        func secondPending() throws -> Int64 {
            try second.query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted) WHERE enqueued_at IS NULL")).int64(0, 0) ?? -1
        }
        try waitUntil("both databases drained", seconds: 60) { try outbox.pendingCount() == 0 && secondPending() == 0 }
        for relay in relays { #expect(relay.finish()) }
        #expect(Self.jids(try outbox.queue("one")) == Array(0..<rows), "every row of the first database once, in order")
        #expect(Self.jids(try outbox.queue("two")) == Array(0..<rows), "every row of the second database once, in order")
    }

    /// `café` in NFC and in NFD are two queues to Sidekiq: they must stay two.
    @Test func queueNamesAreBytes() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let nfc = "caf\u{E9}"
        let nfd = "cafe\u{301}"
        try outbox.insert([(.named("k"), Self.job(nfc, 1)), (.named("k"), Self.job(nfd, 2)), (.named("k"), Self.job(nfc, 3))])
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        func list(_ name: String) throws -> [Int] {
            guard case .array(let items) = try outbox.redis.send([RedisCommand([Array("LRANGE".utf8), Array("queue:\(name)".utf8), Array("0".utf8), Array("-1".utf8)])])[0]
            else { return [] }
            return Self.jids(items.reversed().map { $0.text ?? "" })
        }
        #expect(try list(nfc) == [1, 3])
        #expect(try list(nfd) == [2])
        guard case .array(let members) = try outbox.redis.send([RedisCommand("SMEMBERS", "queues")])[0] else {
            Issue.record("no queues set")
            return
        }
        let names = Set(members.compactMap { reply -> [UInt8]? in if case .bulk(let bytes) = reply { bytes } else { nil } })
        #expect(names == [Array(nfc.utf8), Array(nfd.utf8)])
    }

    /// `infinity`, `-infinity` and the last years PostgreSQL accepts crashed the relay on every start.
    @Test func createdAtValuesThatDoNotFitAreDeadLettered() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let ids = try outbox.insert([(.named("k"), Self.job("a", 1))])
        var bad: [Int64] = []
        for createdAt in ["infinity", "-infinity", "294276-12-31 23:59:59"] {
            bad += try outbox.insert([(.named("k"), Self.job("a", 9))], createdAt: createdAt)
        }
        let last = try outbox.insert([(.named("k"), Self.job("a", 2))])

        let (status, output) = try RelayProcess.run(["status", "--database-url", outbox.servers.databaseURL, "--table", outbox.table.description])
        #expect(status == 0, "status reads a table holding them: \(output)")
        #expect(output.contains("k\t5\t"), "\(output)")

        let relay = RelayRunner(outbox.configuration())
        try waitUntil("all rows marked or dead-lettered") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(Self.jids(try outbox.queue("a")) == [1, 2])
        #expect(try outbox.enqueuedIDs() == ids + last)
        #expect(try outbox.deadLetters().map(\.0) == bad)
        #expect(try outbox.deadLetters().map(\.1) == ["created_at is infinity", "created_at is -infinity", "created_at is out of range"])
    }

    /// A database restored from a backup has the same system identifier but older transaction ids
    /// than the fences Redis keeps; the relay must notice and go on within seconds.
    @Test func aDatabaseRestoredFromABackupKeepsRelaying() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let server = try PrivatePostgres()
        defer { server.destroy() }
        var configuration = outbox.configuration()
        configuration.databaseURL = server.url
        do {
            let connection = try PostgresConnection(connectionString: server.url)
            for statement in outbox.queries.createStatements { try connection.execute(statement) }
        }
        try server.stop()
        try PrivatePostgres.shell(["cp", "-a", "\(server.directory)/data", "\(server.directory)/backup"])
        try server.start()

        func insert(_ range: Range<Int>) throws {
            let connection = try PostgresConnection(connectionString: server.url)
            for n in range {
                _ = try connection.query(SQLStatement(
                    "INSERT INTO \(outbox.table.quoted) (split_key, format, payload, created_at) VALUES ('k', 'sidekiq5', convert_to($1, 'UTF8'), now())",
                    [Self.job("a", n)]))
            }
        }
        func pending() throws -> Int64 {
            try PostgresConnection(connectionString: server.url)
                .query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted) WHERE enqueued_at IS NULL")).int64(0, 0) ?? -1
        }
        // Transaction ids move on after the backup, and the fences with them.
        let burner = try PostgresConnection(connectionString: server.url)
        for _ in 0..<2_000 { try burner.execute("SELECT pg_current_xact_id()") }
        try insert(0..<10)
        let before = RelayRunner(configuration)
        try waitUntil("rows relayed before the restore") { try pending() == 0 }
        #expect(before.finish())

        try server.stop()
        try PrivatePostgres.shell(["rm", "-rf", "\(server.directory)/data"])
        try PrivatePostgres.shell(["cp", "-a", "\(server.directory)/backup", "\(server.directory)/data"])
        try server.start()
        try insert(10..<20)
        let after = RelayRunner(configuration)
        try waitUntil("rows relayed after the restore", seconds: 15) { try pending() == 0 }
        #expect(after.finish())
        #expect(Self.jids(try outbox.queue("a")) == Array(0..<20))
        #expect(after.logs.lines.contains { $0.contains("ahead of PostgreSQL's transaction ids") })
    }
}
