import Foundation
import OutboxRelay
import Testing

/// The relay measures intervals on the monotonic clock: stepping the wall clock (NTP, an
/// operator's `date -s`) changes the times it writes, never its timers.
@Suite(.serialized) struct ClockStepTests {
    static let libfaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

    /// Issue 11, item 11: the wall clock steps back an hour mid-run (libfaketime, monotonic clock
    /// left alone); `WATCHDOG=1` keeps coming, so systemd does not kill a healthy relay.
    @Test func watchdogKeepsPingingWhenTheWallClockStepsBack() throws {
        #expect(FileManager.default.fileExists(atPath: Self.libfaketime), "\(Self.libfaketime) is missing: run 'make test-deps' (Debian's faketime)")
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let notify = try NotifySocket()
        let offset = FileManager.default.temporaryDirectory.appendingPathComponent("faketime-\(UUID().uuidString)")
        try "+0\n".write(to: offset, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: offset) }
        // Through a shell: exec'd straight from a process without libfaketime, the preloaded
        // binary sees no arguments at all.
        let relay = try RelayProcess(
            [
                "-c", #"exec "$0" "$@""#, RelayProcess.executable.path, "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
                "--sleep-on-empty", "0.05",
            ],
            environment: [
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000", "LD_PRELOAD": Self.libfaketime,
                "FAKETIME_TIMESTAMP_FILE": offset.path, "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            ], executable: URL(fileURLWithPath: "/bin/sh"))
        var received: [String] = []
        #expect(notify.waitFor("READY=1", seconds: 20, into: &received), "\(relay.log)")
        #expect(notify.waitFor("WATCHDOG=1", seconds: 2, into: &received))

        try "-1h\n".write(to: offset, atomically: true, encoding: .utf8)
        // The relay's wall clock is an hour behind now: its log lines say so.
        try outbox.insert([(.named("clock"), RelayIntegrationTests.payload("clock", 1))])
        try waitUntil("row relayed", seconds: 10) { try outbox.pendingCount() == 0 }
        #expect(relay.waitForLog("relayed jobs", seconds: 5))
        let line = relay.log.split(separator: "\n").first { $0.contains("relayed jobs") } ?? ""
        let stamp = ISO8601DateFormatter.withFractions.date(from: String(line.prefix(while: { $0 != " " })))
        let behind = Date().timeIntervalSince(stamp ?? Date())
        #expect(behind > 3500 && behind < 3700, "the relay's wall clock is an hour behind: \(line)")

        var pings = 0
        let until = Date(timeIntervalSinceNow: 2)
        while Date() < until {
            var datagrams: [String] = []
            if notify.waitFor("WATCHDOG=1", seconds: until.timeIntervalSinceNow, into: &datagrams) { pings += 1 }
        }
        #expect(pings >= 4, "WATCHDOG=1 every 0.2 s after the step back: \(pings) in 2 s")
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
    }
}

extension ISO8601DateFormatter {
    static var withFractions: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
