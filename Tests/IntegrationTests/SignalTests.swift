import Foundation
import OutboxRelay
import Testing

/// Signals a service manager or an operator sends, and a file limit too low to open sockets.
@Suite(.serialized) struct SignalTests {
    /// Issue 11, item 10: SIGHUP (and SIGUSR1, SIGUSR2, SIGPIPE) leave the relay running.
    @Test func sighupIsLoggedAndTheRelayKeepsRelaying() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--sleep-on-empty", "0.05",
        ])
        #expect(relay.waitForLog("info ready", seconds: 20), "\(relay.log)")
        for signal in [SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE] { relay.signal(signal) }
        #expect(relay.waitForLog("SIGHUP received: there is no configuration to reload; still running", seconds: 5), "\(relay.log)")
        #expect(relay.waitForLog("SIGUSR2 received", seconds: 5), "\(relay.log)")
        try outbox.insert([(.named("hup"), RelayIntegrationTests.payload("hup", 1))])
        try waitUntil("row relayed after SIGHUP", seconds: 10) { try outbox.pendingCount() == 0 }
        #expect(relay.process.isRunning)
        #expect(try outbox.queue("hup") == [RelayIntegrationTests.pushed("hup", 1)])
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
    }

    /// Issue 11, item 10: with `ulimit -n 8` the relay cannot open its sockets (nor, today, its
    /// stop pipe); it says why in one line, keeps retrying, and SIGTERM still stops it at once.
    @Test func aTinyFileLimitGivesAClearLineAndSIGTERMStillStops() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let relay = try RelayProcess(
            [
                "-c", #"ulimit -n 8; exec "$0" "$@""#, RelayProcess.executable.path, "--database-url", outbox.servers.databaseURL,
                "--redis-url", outbox.redisURL, "--table", outbox.table.description, "--sleep-on-empty", "60", "--log-level", "debug",
            ], executable: URL(fileURLWithPath: "/bin/sh"))
        #expect(relay.waitForLog("the open-file limit (ulimit -n, LimitNOFILE=) is 8", seconds: 20), "\(relay.log)")
        #expect(relay.waitForLog("Too many open files", seconds: 20), "\(relay.log)")
        // Retried with backoff: a few rounds go by.
        try waitUntil("retries", seconds: 20) { relay.log.components(separatedBy: "debug retrying").count > 4 }
        #expect(relay.process.isRunning)
        relay.signal(SIGTERM)
        let started = Date()
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(Date().timeIntervalSince(started) < 1.5, "stopped within \(Date().timeIntervalSince(started)) s")
    }
}
