import Foundation
import OutboxRelay
import Testing

/// The command line as a newcomer meets it: `--help` lists run's flags, a misspelled
/// `OUTBOX_RELAY_*` variable is caught, and an empty split-key list serves every key.
@Suite(.serialized) struct CommandLineTests {
    @Test func rootHelpListsTheFlagsOfRun() throws {
        for arguments in [["--help"], ["-h"], ["help"]] {
            let (status, help) = try RelayProcess.run(arguments)
            #expect(status == 0, "\(help)")
            for word in ["--database-url", "--split-keys", "--batch-size", "--metrics-listen", "--version", "OUTBOX_RELAY_<FLAG>", "migrate", "status"] {
                #expect(help.contains(word), "\(arguments) help mentions \(word)")
            }
        }
    }

    @Test func refusesAMisspelledVariableNamingTheFlag() throws {
        let (status, log) = try RelayProcess.run(
            ["--database-url", "postgresql://localhost/db", "--redis-url", "redis://localhost:6379/0"],
            environment: ["OUTBOX_RELAY_BATCH_SZIE": "500"])
        #expect(status == 64)
        #expect(log == "outbox-relay: OUTBOX_RELAY_BATCH_SZIE names no flag; did you mean OUTBOX_RELAY_BATCH_SIZE (--batch-size)?\nSee 'outbox-relay --help'.\n")
    }

    @Test(arguments: [
        (["--split-keys="], [String: String]()),
        ([], ["OUTBOX_RELAY_SPLIT_KEYS": ""]),
    ])
    func anEmptySplitKeyListServesEveryKey(arguments: [String], environment: [String: String]) throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("a"), RelayIntegrationTests.payload("a", 1)), (.named("b"), RelayIntegrationTests.payload("b", 2))])
        var all = environment
        all["OUTBOX_RELAY_UNRELATED_TOOL_SETTING"] = "x"
        let relay = try RelayProcess(
            ["--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description] + arguments,
            environment: all)
        try waitUntil("rows of both keys relayed") { try outbox.pendingCount() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(relay.log.contains("ignoring OUTBOX_RELAY_UNRELATED_TOOL_SETTING: it names no flag of run (closest: "), "\(relay.log)")
    }
}
