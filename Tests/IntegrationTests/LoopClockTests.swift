import Foundation
import OutboxRelay
import OutboxRelayDaemon
import Testing

/// The loop's timers run on the monotonic clock it is given, never on the wall clock.
@Suite(.serialized) struct LoopClockTests {
    /// Rows marked enqueued `days` days ago, on split key `old`.
    static func insertEnqueued(_ outbox: TestOutbox, count: Int, daysAgo days: Int) throws {
        let ids = try outbox.insert((0..<count).map { (.named("old"), RelayIntegrationTests.payload("old", $0)) })
        try outbox.postgres.query(SQLStatement(
            "UPDATE \(outbox.table.quoted) SET enqueued_at = (now() AT TIME ZONE 'utc') - make_interval(days => $1) WHERE id = ANY($2::int8[])",
            [String(days), "{\(ids.map(String.init).joined(separator: ","))}"]))
    }

    static func rows(_ outbox: TestOutbox) throws -> Int64 {
        try outbox.postgres.query(SQLStatement("SELECT count(*) FROM \(outbox.table.quoted) WHERE split_key = 'old'")).int64(0, 0) ?? -1
    }

    /// Issue 11, item 11: cleanup rounds come once a minute of the injected monotonic clock; a
    /// wall clock an hour behind changes nothing, and rounds do not come while it stands still.
    @Test func cleanupRoundsFollowTheMonotonicClock() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        var configuration = outbox.configuration(splitKeys: [.named("live")])
        configuration.cleanup = CleanupPolicy(retention: try ISODuration("P7D"), limit: nil)
        try Self.insertEnqueued(outbox, count: 3, daysAgo: 8)
        let monotonic = FakeClock()
        let relay = RelayRunner(configuration, nowMicros: { RelayClock.wallMicros() - 3_600_000_000 }, monotonicMicros: { monotonic.micros })
        defer { relay.finish() }
        try waitUntil("the first cleanup round", seconds: 20) { try Self.rows(outbox) == 0 }

        try Self.insertEnqueued(outbox, count: 5, daysAgo: 8)
        // Three more rounds of the loop go by (each relays a row), with no cleanup round in them.
        for n in 0..<3 {
            try outbox.insert([(.named("live"), RelayIntegrationTests.payload("live", n))])
            try waitUntil("row \(n) relayed", seconds: 20) { try outbox.pendingCount() == 0 }
        }
        #expect(try Self.rows(outbox) == 5, "no cleanup round while the monotonic clock stands still")

        monotonic.advance(seconds: 61)
        try waitUntil("the next cleanup round", seconds: 20) { try Self.rows(outbox) == 0 }
    }
}
