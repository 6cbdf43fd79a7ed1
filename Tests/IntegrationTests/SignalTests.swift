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

    /// The relay under `ulimit -n LIMIT`, through a shell.
    static func limited(_ limit: Int, _ arguments: [String]) throws -> RelayProcess {
        try RelayProcess(["-c", "ulimit -n \(limit); exec \"$0\" \"$@\"", RelayProcess.executable.path] + arguments, executable: URL(fileURLWithPath: "/bin/sh"))
    }

    /// Issue 11, item 10: with `ulimit -n 8` the runtime cannot even watch for SIGTERM reliably
    /// (and the relay could not make its stop pipe), and with 16 it never connected: below 24 it
    /// refuses to start, in one line.
    @Test func aFileLimitTooLowToRunIsRefusedInOneLine() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let relay = try Self.limited(16, [
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
        ])
        #expect(relay.waitForExit(seconds: 10) == 71, "\(relay.log)")
        let lines = relay.log.split(separator: "\n")
        #expect(lines.count == 1, "\(relay.log)")
        #expect(lines.first?.hasSuffix(
            " critical the open-file limit (ulimit -n, LimitNOFILE=) is 16, too low to run: the relay needs at least 24 file descriptors, 32 to be comfortable; raise it"
        ) == true, "\(relay.log)")
    }

    /// Issue 11, item 10: with a limit it can run under but tighter than it likes, the relay
    /// names the limit in one line, relays, and SIGTERM stops it at once.
    @Test func aTightLimitIsNamedAndTheRelayStillRelaysAndStops() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert((0..<20).map { (.named("q"), RelayIntegrationTests.payload("q", $0)) })
        let relay = try Self.limited(32, [
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--metrics-listen", "127.0.0.1:\(freePort())", "--sleep-on-empty", "60", "--log-level", "debug",
        ])
        #expect(relay.waitForLog("warning the open-file limit (ulimit -n, LimitNOFILE=) is 32, tight: the relay wants 64 file descriptors", seconds: 20), "\(relay.log)")
        try waitUntil("rows relayed", seconds: 20) { try outbox.pendingCount() == 0 }
        #expect(relay.process.isRunning)
        relay.signal(SIGTERM)
        let started = Date()
        #expect(relay.waitForExit(seconds: 10) == 0, "\(relay.log)")
        #expect(Date().timeIntervalSince(started) < 1.5, "stopped within \(Date().timeIntervalSince(started)) s")
    }
}
