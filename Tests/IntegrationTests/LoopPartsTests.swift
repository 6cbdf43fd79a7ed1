import Foundation
import Logging
import OutboxRelay
import OutboxRelayIO
import Testing

@testable import OutboxRelayDaemon

/// The loop's parts, each on its own against a real PostgreSQL: the pass scheduler, cleanup
/// rounds, the pending sampler and the problem log.
@Suite(.serialized) struct LoopPartsTests {
    static func logger(_ logs: LogCapture) -> Logger {
        Logger(label: "test") { _ in logs.handler() }
    }

    @Test func thePassLeasesEachKeyWithWorkInTurnAndSkipsRefusedKeysUntilTheirBackoffEnds() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("a"), "{}"), (.named("b"), "{}"), (.null, "{}")])
        let logs = LogCapture()
        var scheduler = PassScheduler(
            settings: .init(queries: outbox.queries, splitKeys: nil, hasSplitKeys: true), logger: Self.logger(logs), rotationStart: 0)
        var leased: [SplitKey] = []
        var between = 0
        func pass(at now: Int64, refusing refused: SplitKey? = nil) throws -> PassScheduler.Outcome {
            try scheduler.pass(
                postgres: outbox.postgres, nowMicros: now, isStopRequested: { false },
                lease: { key, _, _ in
                    leased.append(key)
                    var outcome = LeaseMachine.Outcome(handled: 1, relayed: key == refused ? 0 : 1)
                    if key == refused { outcome.refused = "wrong type" }
                    return outcome
                }, between: { between += 1 })
        }
        let first = try pass(at: 0, refusing: .named("b"))
        #expect(Set(leased) == [.named("a"), .named("b"), .null])
        #expect(first.keysWithWork == 3)
        #expect(first.relayed == 2)
        #expect(first.worked)
        #expect(between == 3)
        #expect(logs.lines.filter { $0.contains("Redis refused a batch") && $0.contains(" error ") }.count == 1)
        leased = []
        _ = try pass(at: 500_000)
        #expect(!leased.contains(.named("b")), "a refused key waits 1 s")
        leased = []
        _ = try pass(at: 1_000_000)
        #expect(leased.contains(.named("b")))
        #expect(logs.lines.contains { $0.contains("Redis takes the split key's batches again") })

        var configured = PassScheduler(
            settings: .init(queries: outbox.queries, splitKeys: [.named("a"), .named("zz")], hasSplitKeys: true), logger: Self.logger(logs),
            rotationStart: 0)
        leased = []
        let only = try configured.pass(
            postgres: outbox.postgres, nowMicros: 0, isStopRequested: { false },
            lease: { key, _, _ in
                leased.append(key)
                return LeaseMachine.Outcome()
            }, between: {})
        #expect(leased == [.named("a")], "configured keys without pending rows are not leased")
        #expect(!only.worked)
    }

    /// A SQL_ASCII database can hold split keys that are not UTF-8; they cannot be named in a
    /// statement, so the pass says so once instead of passing over them in silence.
    @Test func aSplitKeyThatIsNotUTF8IsReportedOnce() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let (_, ascii) = try outbox.otherDatabase("ascii", options: "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        try ascii.execute(
            "INSERT INTO \(outbox.table.quoted) (split_key, format, payload, created_at) VALUES (E'k\\xff', 'sidekiq5', '{}', now()), ('plain', 'sidekiq5', '{}', now())")
        let logs = LogCapture()
        var scheduler = PassScheduler(
            settings: .init(queries: outbox.queries, splitKeys: nil, hasSplitKeys: true), logger: Self.logger(logs), rotationStart: 0)
        var leased: [SplitKey] = []
        for _ in 0..<2 {
            _ = try scheduler.pass(
                postgres: ascii, nowMicros: 0, isStopRequested: { false },
                lease: { key, _, _ in
                    leased.append(key)
                    return LeaseMachine.Outcome()
                }, between: {})
        }
        #expect(leased == [.named("plain"), .named("plain")])
        let errors = logs.lines.filter { $0.contains("not valid UTF-8") }
        #expect(errors.count == 1, "\(logs.lines)")
        #expect(errors.first?.contains("outbox.split_key_hex=6bff") == true)
    }

    /// Discovery reads the keys of a page of pending rows in one index scan (4,000 rows, or
    /// 200,000 when the first page found few rows per key), and falls back to one probe per key
    /// when there are more; either way every key, NULL last. Passes over 8 keys
    /// or more lease them in groups, except NULL and keys with a carried-over backlog.
    @Test func discoveryFindsEveryKeyOnEitherSideOfThePageAndGroupsManyKeys() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let logs = LogCapture()
        var scheduler = PassScheduler(
            settings: .init(queries: outbox.queries, splitKeys: nil, hasSplitKeys: true, groupSize: 4), logger: Self.logger(logs),
            rotationStart: 0)
        var alone: [SplitKey] = []
        var groups: [[SplitKey]] = []
        func pass() throws {
            alone = []
            groups = []
            _ = try scheduler.pass(
                postgres: outbox.postgres, nowMicros: 0, isStopRequested: { false },
                lease: { key, _, _ in
                    alone.append(key)
                    return LeaseMachine.Outcome()
                },
                leaseGroup: { keys, _, tempos in
                    groups.append(keys)
                    return keys.map { key in
                        var outcome = LeaseMachine.Outcome(handled: 1, relayed: 1)
                        // As LeaseRun does: a key whose batch was full carries its tempo over.
                        if key == .named("k03") {
                            outcome.carriedLimit = 40
                            tempos[key] = 40
                        }
                        return outcome
                    }
                }, between: {})
        }
        let keys = (0..<10).map { SplitKey.named(String(format: "k%02d", $0)) }
        try outbox.insert(keys.map { ($0, "{}") } + [(.null, "{}")])
        try pass()
        #expect(groups.flatMap { $0 }.sorted { "\($0)" < "\($1)" } == keys, "ten keys found, leased in groups: \(groups)")
        #expect(groups.allSatisfy { $0.count <= 4 * PassScheduler.groupsPerCall })
        #expect(alone == [.named("k03"), .null], "the key with a backlog is leased alone after its group, and NULL alone")

        _ = try outbox.postgres.query(SQLStatement(
            """
            INSERT INTO \(outbox.table.quoted) (split_key, format, payload, created_at) \
            SELECT 'k00', 'sidekiq5', '{}', now() FROM generate_series(1, $1::int)
            """, [String(PassScheduler.discoveryPages.large)]))
        try pass()
        #expect(Set(groups.flatMap { $0 } + alone) == Set(keys + [.null]), "past the page, probes find every key")
        #expect(groups.flatMap { $0 }.contains(.named("k03")) == false, "k03 carried a backlog: leased alone")
    }

    @Test func theSamplerSamplesEveryFifteenSecondsOfTheMonotonicClock() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("a"), "{}"), (.named("a"), "{}"), (.null, "{}")])
        var sampler = PendingSampler(queries: outbox.queries)
        let sample = try #require(try sampler.sampleIfDue(postgres: outbox.postgres, nowMicros: 0))
        #expect(sample.map(\.key) == [.named("a"), .null])
        #expect(sample.map(\.pending) == [2, 1])
        #expect(try sampler.sampleIfDue(postgres: outbox.postgres, nowMicros: 14_999_999) == nil)
        #expect(try sampler.sampleIfDue(postgres: outbox.postgres, nowMicros: 15_000_000) != nil)
    }

    @Test func cleanupRoundsRunOnceAMinuteAndOnlyWithAPolicy() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let ids = try outbox.insert((0..<3).map { _ in (.named("a"), "{}") })
        try outbox.postgres.execute("UPDATE \(outbox.table.quoted) SET enqueued_at = now() - interval '2 days' WHERE id <> \(ids[2])")
        let logs = LogCapture()
        var none = CleanupRounds(policy: nil, queries: outbox.queries, logger: Self.logger(logs))
        try none.runIfDue(postgres: outbox.postgres, nowMicros: 0, isStopRequested: { false }, chunkDeleted: {})
        #expect(try outbox.pendingCount() == 1)
        var rounds = CleanupRounds(policy: CleanupPolicy(retention: try ISODuration("P1D"), limit: nil), queries: outbox.queries, logger: Self.logger(logs))
        var chunks = 0
        try rounds.runIfDue(postgres: outbox.postgres, nowMicros: 0, isStopRequested: { false }, chunkDeleted: { chunks += 1 })
        let left = try outbox.postgres.query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted)")).int64(0, 0)
        #expect(left == 1, "the two old enqueued rows are gone, the pending one stays")
        #expect(chunks >= 1)
        chunks = 0
        try rounds.runIfDue(postgres: outbox.postgres, nowMicros: 59_000_000, isStopRequested: { false }, chunkDeleted: { chunks += 1 })
        #expect(chunks == 0, "not again within a minute")
    }

    @Test func theProblemLogSaysEachProblemOnceAndTheRecoveryOnce() {
        let logs = LogCapture()
        var problems = ProblemLog(logger: Self.logger(logs), notifier: SystemdNotifier())
        problems.report("database away")
        problems.report("database away")
        problems.report("redis away")
        problems.recovered()
        problems.recovered()
        #expect(logs.lines.filter { $0.contains(" error ") }.count == 2)
        #expect(logs.lines.filter { $0.contains(" debug database away") }.count == 1)
        #expect(logs.lines.filter { $0.contains("relaying again") }.count == 1)
    }
}
