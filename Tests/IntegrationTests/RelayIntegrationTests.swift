import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

@Suite(.serialized) struct RelayIntegrationTests {
    /// The job the app stored for row `n` of `queue`.
    static func payload(_ queue: String, _ n: Int) -> String {
        #"{"class":"ReportJob","args":[\#(n),"päyload ✓",{"nested":{"queue":"not-this-one"}}],"queue":"\#(queue)","jid":"\#(String(format: "%024x", n))","created_at":1704164645.5,"retry":3}"#
    }

    /// What Sidekiq must find in Redis for it: the same bytes plus enqueued_at = created_at of the row.
    static func pushed(_ queue: String, _ n: Int) -> String {
        String(payload(queue, n).dropLast()) + #","enqueued_at":1704164645.123456}"#
    }

    @Test func drainsThousandsOfRowsOverSeveralKeysInRowOrder() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let queues = ["default", "mailers", "critical"]
        var rows: [(SplitKey, String)] = []
        for n in 0..<3000 {
            let queue = queues[n % 3]
            rows.append((.named(queue), Self.payload(queue, n)))
        }
        let ids = try outbox.insert(rows)
        let relay = RelayRunner(outbox.configuration(batchSize: 250))
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())

        for queue in queues {
            let expected = (0..<3000).filter { queues[$0 % 3] == queue }.map { Self.pushed(queue, $0) }
            #expect(try outbox.queue(queue) == expected, "queue \(queue) holds every job once, in row order")
        }
        #expect(try outbox.set("queues") == Set(queues))
        #expect(try outbox.enqueuedIDs() == ids)
    }

    @Test func servesOnlyTheNamedSplitKeys() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("a"), Self.payload("a", 1)), (.named("b"), Self.payload("b", 2)), (.null, Self.payload("c", 3))])
        let relay = RelayRunner(outbox.configuration(splitKeys: [.named("a")]))
        try waitUntil("key a relayed") { try outbox.queue("a").count == 1 }
        // A row of key a inserted now is relayed by a later pass, which saw b and NULL pending too.
        try outbox.insert([(.named("a"), Self.payload("a", 4))])
        try waitUntil("a later pass") { try outbox.queue("a").count == 2 }
        #expect(relay.finish())
        #expect(try outbox.queue("a") == [Self.pushed("a", 1), Self.pushed("a", 4)])
        #expect(try outbox.queue("b") == [])
        #expect(try outbox.pendingCount() == 2)
    }

    @Test func discoversEveryKeyIncludingNullAndKeysThatAppearLater() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("a"), Self.payload("a", 1)), (.null, Self.payload("n", 2))])
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("first keys relayed") { try outbox.pendingCount() == 0 }
        try outbox.insert([(.named("late"), Self.payload("late", 3))])
        try waitUntil("new key relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.queue("a") == [Self.pushed("a", 1)])
        #expect(try outbox.queue("n") == [Self.pushed("n", 2)])
        #expect(try outbox.queue("late") == [Self.pushed("late", 3)])
    }

    /// Without a dead-letter table, bad rows stay pending and are skipped; the error names the fix.
    @Test func skipsBadRowsWhenTheDeadLetterTableIsMissing() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.postgres.execute("DROP TABLE \(outbox.queries.deadLetterTable.quoted)")
        var rows: [(SplitKey, String)] = [(.named("q"), "not json"), (.named("q"), #"{"class":"J","args":[]}"#)]
        rows += (0..<20).map { (.named("q"), Self.payload("q", $0)) }
        let ids = try outbox.insert(rows)
        let relay = RelayRunner(outbox.configuration(batchSize: 2))
        try waitUntil("good rows relayed") { try outbox.pendingCount() == 2 }
        try waitUntil("both bad rows reported") { relay.logs.lines.filter { $0.contains("row cannot be relayed") }.count >= 2 }
        #expect(relay.finish())
        #expect(try outbox.queue("q") == (0..<20).map { Self.pushed("q", $0) })
        #expect(try outbox.enqueuedIDs() == Array(ids[2...]))
        let errors = relay.logs.lines.filter { $0.contains(" error ") }
        #expect(errors.count == 2, "each bad row is reported once: \(errors)")
        #expect(errors.allSatisfy { $0.contains("stays pending") && $0.contains("run 'outbox-relay migrate'") })
        #expect(errors.contains { $0.contains("outbox.row_id=\(ids[0])") && $0.contains("not a JSON object") })
        #expect(errors.contains { $0.contains("outbox.row_id=\(ids[1])") && $0.contains(#"no "queue" string"#) })
    }

    @Test func skipsAKeyLeasedElsewhereAndTakesItWhenFreed() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("held"), Self.payload("held", 1)), (.named("free"), Self.payload("free", 2))])
        let resolved = "public.\(outbox.table.name)"
        let other = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        let lease = LeaseKey(table: resolved, format: "sidekiq5", splitKey: .named("held"))
        #expect(try other.query(outbox.queries.tryLease(lease)).int64(0, 0) != nil, "the test holds the lease")
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("free key relayed") { try outbox.queue("free").count == 1 }
        try outbox.insert([(.named("free"), Self.payload("free", 3))])
        try waitUntil("a later pass, which tried the held key too") { try outbox.queue("free").count == 2 }
        #expect(try outbox.queue("held") == [], "a key leased elsewhere is skipped")
        try other.query(outbox.queries.releaseLease(lease))
        try waitUntil("held key relayed once freed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.queue("held") == [Self.pushed("held", 1)])
    }

    @Test func wakesAtOnceOnANotificationInsteadOfSleeping() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        for statement in outbox.queries.notifyStatements(channel: "outbox_test_\(outbox.table.name)") { try outbox.postgres.execute(statement) }
        var configuration = outbox.configuration(splitKeys: [.named("fast")])
        configuration.sleepOnEmpty = 30
        configuration.notifyChannel = "outbox_test_\(outbox.table.name)"
        let relay = RelayRunner(configuration)
        // "ready" comes once every connection is up, the LISTEN one included.
        try waitUntil("the relay listens") { relay.logs.lines.contains { $0.contains(" ready ") || $0.hasSuffix(" ready\n") } }
        for n in 0..<3 {
            let started = Date()
            try outbox.insert([(.named("fast"), Self.payload("fast", n))])
            try waitUntil("row \(n) relayed", seconds: 5) { try outbox.queue("fast").count == n + 1 }
            #expect(Date().timeIntervalSince(started) < 1, "relayed in well under --sleep-on-empty (30 s)")
        }
        #expect(relay.finish())
    }

    @Test func capsABatchByPayloadBytes() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert((0..<50).map { (.named("big"), Self.payload("big", $0)) })
        var configuration = outbox.configuration(batchSize: 1000)
        configuration.maxBatchBytes = 1024
        let relay = RelayRunner(configuration)
        try waitUntil("rows relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.queue("big") == (0..<50).map { Self.pushed("big", $0) })
        let batches = relay.logs.lines.filter { $0.contains("batch relayed") }
        #expect(batches.count >= 50 * Self.payload("big", 0).utf8.count / 1024, "about 1 KB per batch: \(batches.count) batches")
    }

    @Test func waitsForAMissingTableAndStartsWhenItAppears() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.postgres.execute("DROP TABLE \(outbox.table.quoted)")
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("the relay finds the table missing") { relay.logs.lines.contains { $0.contains("does not exist") } }
        for statement in outbox.queries.createStatements { try outbox.postgres.execute(statement) }
        try outbox.insert([(.named("q"), Self.payload("q", 1))])
        try waitUntil("row relayed after the table appeared") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.queue("q") == [Self.pushed("q", 1)])
        let missing = relay.logs.lines.filter { $0.contains("does not exist") && !$0.contains(" debug ") }
        #expect(missing.count == 1 && missing[0].contains(" error "), "the missing table is reported once: \(missing)")
    }
}
