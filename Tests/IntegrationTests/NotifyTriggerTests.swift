import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// `migrate --notify`'s trigger runs inside the application's own INSERT: whatever the app writes,
/// it must never fail that transaction, and it must still wake the relay.
@Suite(.serialized) struct NotifyTriggerTests {
    static func migrate(_ outbox: TestOutbox, channel: String) throws {
        let (status, output) = try RelayProcess.run([
            "migrate", "--notify", "--notify-channel", channel, "--table", outbox.table.description,
            "--database-url", outbox.servers.databaseURL,
        ])
        #expect(status == 0, "\(output)")
    }

    /// The payloads of the notifications on `listener` until `count` arrived (or 10 s passed).
    static func payloads(_ listener: PostgresConnection, count: Int) throws -> [String] {
        var received: [String] = []
        try waitUntil("\(count) notifications", seconds: 10) {
            received += try listener.notifications().map(\.payload)
            return received.count >= count
        }
        return received
    }

    static func job(_ n: Int) -> String { #"{"class":"J","queue":"q","args":[\#(n)]}"# }

    @Test func neverFailsTheAppsInsertAndStillNotifies() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let channel = "outbox_test_\(outbox.table.name)"
        try Self.migrate(outbox, channel: channel)
        let listener = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        try listener.execute("LISTEN \"\(channel)\"")

        // Short enough: the keys themselves, sorted and comma-separated.
        try outbox.insert([(.named("b"), Self.job(0)), (.named("a"), Self.job(1)), (.null, Self.job(2))])
        #expect(try Self.payloads(listener, count: 1) == [",a,b"])
        let fits = String(repeating: "x", count: 7999)
        try outbox.insert([(.named(fits), Self.job(3))])
        #expect(try Self.payloads(listener, count: 1) == [fits], "7,999 bytes is the most NOTIFY takes")

        // Too long in bytes, though not in characters: an empty payload, and the INSERT commits.
        try outbox.insert((1...1000).map { (.named("ключ-\($0)"), Self.job($0)) })
        #expect(try Self.payloads(listener, count: 1) == [""])
        try outbox.insert([(.named(String(repeating: "鍵", count: 3000)), Self.job(4))])
        #expect(try Self.payloads(listener, count: 1) == [""])
        try outbox.insert([(.named(String(repeating: "x", count: 8000)), Self.job(5))])
        #expect(try Self.payloads(listener, count: 1) == [""])
        #expect(try outbox.pendingCount() == 1006, "every INSERT committed")
    }

    @Test func anEmptyPayloadWakesTheRelay() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let channel = "outbox_test_\(outbox.table.name)"
        try Self.migrate(outbox, channel: channel)
        let notify = try NotifySocket()
        let relay = try RelayProcess(
            [
                "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
                "--notify-channel", channel, "--sleep-on-empty", "60",
            ], environment: ["NOTIFY_SOCKET": notify.path])
        try outbox.insert([(.named("k"), Self.job(0))])
        var received: [String] = []
        let idle = "STATUS=relaying: 1 jobs since start; 0 split keys with pending rows in the last pass"
        #expect(notify.waitFor(idle, seconds: 30, into: &received), "\(received) \(relay.log)")
        // The relay now waits up to 60 s for a notification; only the trigger's can wake it.
        try outbox.insert([(.named(String(repeating: "鍵", count: 3000)), Self.job(1))])
        try waitUntil("the row behind an empty notification relayed", seconds: 10) { try outbox.pendingCount() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(try outbox.queue("q").count == 2)
    }

    @Test func migrateAgainReplacesAnInstalledTrigger() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let channel = "outbox_test_\(outbox.table.name)"
        let function = "\"\(outbox.table.name)_notify\""
        // The trigger as version 0.1.0 installed it.
        try outbox.postgres.execute(
            """
            CREATE OR REPLACE FUNCTION \(function)() RETURNS trigger LANGUAGE plpgsql AS $outbox$ \
            BEGIN PERFORM pg_notify('\(channel)', left(coalesce((SELECT string_agg(DISTINCT coalesce(split_key, ''), ',') FROM outbox_new_rows), ''), 7000)); \
            RETURN NULL; END $outbox$
            """)
        try outbox.postgres.execute(
            """
            CREATE TRIGGER \(function) AFTER INSERT ON \(outbox.table.quoted) REFERENCING NEW TABLE AS outbox_new_rows \
            FOR EACH STATEMENT EXECUTE FUNCTION \(function)()
            """)
        let cjk = String(repeating: "鍵", count: 3000)
        #expect(throws: PostgresError.self, "the old trigger fails the app's INSERT") {
            try outbox.insert([(.named(cjk), Self.job(0))])
        }
        try Self.migrate(outbox, channel: channel)
        try outbox.insert([(.named(cjk), Self.job(1))])
        #expect(try outbox.pendingCount() == 1)
        let triggers = try outbox.postgres.query(SQLStatement(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal", [outbox.table.quoted]))
        #expect(triggers.int64(0, 0) == 1, "one trigger, replaced in place")
    }
}
