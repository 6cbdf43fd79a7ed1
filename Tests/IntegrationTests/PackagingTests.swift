import Foundation
import OutboxRelay
import Testing

/// The .deb that `make deb` builds: installs with dpkg, its unit verifies, its binary relays,
/// and it removes cleanly.
@Suite(.serialized) struct PackagingTests {
    @Test func theDebInstallsRunsAndRemovesCleanly() throws {
        guard let deb = ProcessInfo.processInfo.environment["OUTBOX_RELAY_DEB"], FileManager.default.fileExists(atPath: deb) else {
            Issue.record("OUTBOX_RELAY_DEB names no package: run the tests with 'make test', which builds it with 'make deb'")
            return
        }
        guard getuid() == 0 else {
            Issue.record("installing a .deb needs root")
            return
        }
        let (installed, installLog) = try OperationsTests.run(["dpkg", "-i", deb])
        #expect(installed == 0, "\(installLog)")
        defer { _ = try? OperationsTests.run(["dpkg", "--purge", "outbox-relay"]) }

        let (versionStatus, version) = try OperationsTests.run(["/usr/bin/outbox-relay", "--version"])
        #expect(versionStatus == 0 && version == "0.1.0\n", "\(version)")
        let (ldd, libraries) = try OperationsTests.run(["ldd", "/usr/bin/outbox-relay"])
        #expect(ldd == 0 && !libraries.contains("libswift") && !libraries.contains("not found"), "\(libraries)")
        let (verify, problems) = try OperationsTests.run(["systemd-analyze", "verify", "/usr/lib/systemd/system/outbox-relay@default.service"])
        #expect(verify == 0 && problems.isEmpty, "\(problems)")
        #expect(FileManager.default.fileExists(atPath: "/usr/share/doc/outbox-relay/examples/default.env"))

        // The credentials drop-in of the examples verifies with the unit.
        let dropIns = "/etc/systemd/system/outbox-relay@default.service.d"
        try FileManager.default.createDirectory(atPath: dropIns, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dropIns) }
        try FileManager.default.copyItem(atPath: "/usr/share/doc/outbox-relay/examples/credentials.conf", toPath: "\(dropIns)/credentials.conf")
        let (verifyDropIn, dropInProblems) = try OperationsTests.run(["systemd-analyze", "verify", "/usr/lib/systemd/system/outbox-relay@default.service"])
        #expect(verifyDropIn == 0 && dropInProblems.isEmpty, "\(dropInProblems)")
        try FileManager.default.removeItem(atPath: dropIns)

        // The installed binary relays.
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert([(.named("deb"), RelayIntegrationTests.payload("deb", 1))])
        let relay = try RelayProcess(
            ["--table", outbox.table.description], environment: ["DATABASE_URL": outbox.servers.databaseURL, "REDIS_URL": outbox.redisURL],
            executable: URL(fileURLWithPath: "/usr/bin/outbox-relay"))
        try waitUntil("row relayed by the installed binary") { try outbox.pendingCount() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        #expect(try outbox.queue("deb") == [RelayIntegrationTests.pushed("deb", 1)])

        let (removed, removeLog) = try OperationsTests.run(["dpkg", "--purge", "outbox-relay"])
        #expect(removed == 0, "\(removeLog)")
        for path in ["/usr/bin/outbox-relay", "/usr/lib/systemd/system/outbox-relay@.service", "/usr/share/doc/outbox-relay", "/etc/outbox-relay"] {
            #expect(!FileManager.default.fileExists(atPath: path), "\(path) is gone")
        }
    }
}
