import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Every kind of bad row, mixed with good rows on one split key: the good ones run in Sidekiq,
/// each bad one lands in the dead-letter table with its reason, and the relay keeps going.
@Suite(.serialized) struct BadRowTests {
    @Test func deadLettersEveryKindOfBadRowWhileTheGoodRowsFlow() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let key = SplitKey.named("mixed")
        var good: [Int64: Int] = [:]
        var bad: [Int64: String] = [:]
        var n = 0
        func addGood() throws {
            n += 1
            let payload = #"{"class":"RecordJob","queue":"mixed","args":[\#(n),"ok ✓"]}"#
            good[try outbox.insert([(key, payload)], createdAt: nil)[0]] = n
        }
        func addBad(_ payload: String, _ reason: String) throws {
            bad[try outbox.insert([(key, payload)], createdAt: nil)[0]] = reason
            try addGood()
        }
        try addGood()
        bad[try outbox.insertRaw(key, Array(#"{"class":"J","queue":"mixed","args":[""#.utf8) + [0xC3, 0x28] + Array(#""]}"#.utf8))] =
            "payload is not a JSON object: invalid UTF-8 at byte 38"
        try addGood()
        try addBad("not json at all", "payload is not a JSON object: expected a JSON object at byte 0")
        try addBad(#"["RecordJob", 1]"#, "payload is not a JSON object: expected a JSON object at byte 0")
        try addBad(#"{"queue":"mixed","args":[1]}"#, #"payload has no "class" string"#)
        try addBad(#"{"class":"RecordJob","args":[1]}"#, #"payload has no "queue" string"#)
        try addBad(#"{"class":"RecordJob","queue":"mixed","args":"1,2"}"#, #"payload's "args" is not an array"#)
        try addBad(#"{"class":"RecordJob","queue":"mixed","args":[],"at":"soon"}"#, #"payload's "at" is not a number"#)
        let huge = #"{"class":"RecordJob","queue":"mixed","args":["\#(String(repeating: "y", count: 5000))"]}"#
        try addBad(huge, "payload is \(huge.utf8.count) bytes, more than --max-payload-bytes 4096")

        var configuration = outbox.configuration(batchSize: 3)
        configuration.sidekiq = SidekiqJobEncoder(maximumPayloadBytes: 4096)
        let relay = RelayRunner(configuration)
        try waitUntil("every row handled") { try outbox.pendingCount() == 0 }

        let letters = try outbox.deadLetters()
        #expect(letters.map(\.0) == bad.keys.sorted(), "every bad row is in the dead-letter table")
        for (id, error) in letters { #expect(error == bad[id], "reason of row \(id)") }
        #expect(try outbox.enqueuedIDs() == good.keys.sorted(), "every good row was marked")
        let deadLettered = relay.logs.lines.filter { $0.contains("row dead-lettered") }
        #expect(deadLettered.count == bad.count, "one line per bad row")

        // The relay is still running: a new row still flows.
        try addGood()
        try waitUntil("a later row relayed") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())

        let sidekiq = SidekiqServer(redisURL: outbox.redisURL)
        try sidekiq.start(queues: ["mixed"])
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(good.count, client: outbox.redis)
        #expect(runs.map { ($0.args[0] as! NSNumber).intValue } == good.keys.sorted().map { good[$0]! })
    }

    @Test func deadLettersCanBeListedFixedAndRetried() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let ids = try outbox.insert([(.named("fix"), #"{"class":"RecordJob","args":[1]}"#), (.named("fix"), "{oops")])
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("rows dead-lettered") { try outbox.deadLetters().count == 2 }

        let common = ["--database-url", outbox.servers.databaseURL, "--table", outbox.table.description]
        let (listStatus, list) = try RelayProcess.run(["dead-letters", "list", "--json"] + common)
        #expect(listStatus == 0)
        let lines = list.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(lines.map { ($0["id"] as! NSNumber).int64Value } == ids)
        #expect(lines.map { $0["error"] as! String } == [#"payload has no "queue" string"#, "payload is not a JSON object: expected a string key at byte 1"])
        #expect(lines.map { $0["payload"] as! String } == [#"{"class":"RecordJob","args":[1]}"#, "{oops"])
        #expect(lines.allSatisfy { $0["split_key"] as? String == "fix" })

        try outbox.postgres.query(SQLStatement(
            "UPDATE \(outbox.queries.deadLetterTable.quoted) SET payload = convert_to($1, 'UTF8') WHERE id = $2",
            [#"{"class":"RecordJob","queue":"fix","args":[1],"jid":"0000000000000000000000aa"}"#, String(ids[0])]))
        let (retryStatus, retried) = try RelayProcess.run(["dead-letters", "retry", "--id", String(ids[0])] + common)
        #expect(retryStatus == 0, "\(retried)")
        #expect(retried == "moved 1 dead letter(s) back to \(outbox.table): \(ids[0])\n")
        // The push comes before the mark, so wait for the mark.
        try waitUntil("fixed row relayed and marked") { try outbox.enqueuedIDs().count == 1 }
        #expect(try outbox.enqueuedIDs() == [ids[0]], "it went back under its own id")
        #expect(try outbox.queue("fix").count == 1)

        let (discardStatus, _) = try RelayProcess.run(["dead-letters", "discard", "--id", String(ids[1])] + common)
        #expect(discardStatus == 0)
        #expect(try outbox.deadLetters().isEmpty)
        #expect(relay.finish())
    }

    @Test func migrateCreatesEachLayoutIdempotentlyAndPrintsItsSQL() throws {
        let servers = try TestServers.fromEnvironment()
        for layout in OutboxLayout.allCases {
            let table = "migrated_\(layout.rawValue)_\(getpid())"
            let common = ["--database-url", servers.databaseURL, "--schema", layout.rawValue, "--table", table]
            for _ in 0..<2 {
                let (status, output) = try RelayProcess.run(["migrate"] + common)
                #expect(status == 0)
                #expect(output == "migrated: \(table) (\(layout.rawValue) layout), its indexes, and \(table)_dead_letters\n")
            }
            let (printStatus, printed) = try RelayProcess.run(["migrate", "--print", "--schema", layout.rawValue, "--table", table])
            #expect(printStatus == 0)
            let queries = OutboxQueries(layout: layout, table: try TableName(table))
            #expect(printed == (queries.createStatements + [queries.enqueueFunctionStatement]).map { $0 + ";\n" }.joined())
            let postgres = try PostgresConnection(connectionString: servers.databaseURL)
            let indexes = try postgres.query(SQLStatement("SELECT count(*) FROM pg_indexes WHERE tablename = $1", [table]))
            #expect(indexes.int64(0, 0) == 4)
            try postgres.execute("DROP TABLE \(table), \(table)_dead_letters")
        }
    }
}
