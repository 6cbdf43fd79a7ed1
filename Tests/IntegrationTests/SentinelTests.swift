import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Redis failovers under two relay processes that follow the Sentinels, while an application
/// commits: with `--redis-wait-replicas 1` nothing is lost or duplicated, whatever the fault;
/// without it, a kill -9 of the master may lose the jobs it had not replicated, never more.
@Suite(.serialized) struct SentinelTests {
    static func relays(
        _ outbox: TestOutbox, _ cluster: SentinelCluster, wait: Bool, url: String = "redis://\(SentinelCluster.masterName)/0", more: [String] = []
    ) throws -> [RelayProcess] {
        var arguments = [
            "--database-url", outbox.servers.databaseURL, "--table", outbox.table.name, "--redis-sentinels", cluster.sentinelList,
            "--redis-url", url, "--batch-size", "20", "--sleep-on-empty", "0.05", "--network-timeout", "2",
        ] + more
        if wait { arguments += ["--redis-wait-replicas", "1", "--redis-wait-timeout", "0.5"] }
        let relays = try (0..<2).map { _ in try RelayProcess(arguments) }
        for relay in relays { #expect(relay.waitForLog("info ready", seconds: 30), "relay ready: \(relay.log)") }
        return relays
    }

    /// Waits for the producer to have committed `rows` more rows and the relays to have marked them.
    static func relayMore(_ outbox: TestOutbox, _ producer: OutboxProducer, rows: Int = 200, seconds: Double = 60) throws {
        let target = producer.produced + rows
        try waitUntil("\(rows) more rows relayed", seconds: seconds) {
            try outbox.postgres.query(SQLStatement(
                "SELECT count(*) FROM \(outbox.table.quoted) WHERE enqueued_at IS NOT NULL AND (convert_from(payload, 'UTF8')::json->'args'->>0)::int >= $1",
                [String(target)])).int64(0, 0)! > 0
        }
    }

    /// Stops the producer, waits for every row to be marked, and counts the jobs on the master.
    static func drainAndCount(_ outbox: TestOutbox, _ cluster: SentinelCluster, _ producer: OutboxProducer, _ relays: [RelayProcess])
        throws -> DeliveryCount
    {
        producer.stop()
        try waitUntil("every row relayed", seconds: 60) { try outbox.pendingCount() == 0 }
        for (index, relay) in relays.enumerated() { #expect(relay.process.isRunning, "relay \(index) never restarted: \(relay.log.suffix(2000))") }
        return try DeliveryCount.of(table: outbox.table, postgres: outbox.postgres, redis: cluster.connection(cluster.master))
    }

    /// `SENTINEL FAILOVER`: the master is demoted and its clients dropped; then more rows relayed.
    static func plannedFailover(_ outbox: TestOutbox, _ cluster: SentinelCluster, _ producer: OutboxProducer) throws {
        let first = try #require(cluster.masterPort())
        try cluster.failOver()
        try cluster.waitForFailover(from: first)
        try cluster.waitUntilReplicaInSync()
        try relayMore(outbox, producer)
    }

    @Test func withReplicaAcknowledgementsNoFailoverLosesOrDuplicatesAJob() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let cluster = try SentinelCluster()
        defer { cluster.destroy() }
        let relays = try Self.relays(outbox, cluster, wait: true)
        let producer = OutboxProducer(url: outbox.servers.databaseURL, table: outbox.table)
        defer { producer.stop() }
        try Self.relayMore(outbox, producer)

        // 1. A planned failover: the master is demoted, its clients dropped.
        try Self.plannedFailover(outbox, cluster, producer)

        // 2. kill -9 of the master while its replica lags; the master comes back empty and rejoins
        // as a replica. Nothing pushed meanwhile is confirmed, so nothing of it is marked.
        let killed = cluster.master
        let reconnect = try cluster.cutReplication()
        let produced = producer.produced
        try waitUntil("rows committed while the replica lags") { producer.produced > produced + 100 }
        killed.stop()
        try reconnect()
        try cluster.waitForFailover(from: killed.port)
        try cluster.restartEmpty(killed)
        try cluster.waitUntilReplicaInSync()
        try Self.relayMore(outbox, producer)

        // 3. The replica killed: no push is confirmed, so nothing committed from now on is marked.
        let replica = cluster.replica
        replica.stop()
        let afterKill = producer.produced
        Thread.sleep(forTimeInterval: 1.5)
        let markedMeanwhile = try outbox.postgres.query(SQLStatement(
            "SELECT count(*) FROM \(outbox.table.quoted) WHERE enqueued_at IS NOT NULL AND (convert_from(payload, 'UTF8')::json->'args'->>0)::int > $1",
            [String(afterKill)])).int64(0, 0)!
        #expect(producer.produced > afterKill + 50, "the producer went on committing")
        #expect(markedMeanwhile == 0, "no row is marked while no replica acknowledges")
        try cluster.restartEmpty(replica)
        try cluster.waitUntilReplicaInSync()
        try Self.relayMore(outbox, producer)

        let count = try Self.drainAndCount(outbox, cluster, producer, relays)
        print("Sentinel failovers with --redis-wait-replicas 1: \(count)")
        if count.lost > 0 {
            for (index, relay) in relays.enumerated() { print("--- relay \(index):\n\(relay.log.suffix(6000))") }
            print(cluster.logs(lines: 150))
        }
        #expect(count.lost == 0 && count.duplicated == 0 && count.orphaned == 0 && count.outOfOrder.isEmpty, "\(count)")
        #expect(relays.contains { $0.log.contains("replicas did not confirm") }, "the paused pushes are logged")
        for relay in relays { relay.signal(SIGTERM) }
        for relay in relays { #expect(relay.waitForExit(seconds: 10) == 0) }
    }

    @Test func withoutReplicaAcknowledgementsAKilledMasterLosesOnlyWhatItHadNotReplicated() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let cluster = try SentinelCluster()
        defer { cluster.destroy() }
        let relays = try Self.relays(outbox, cluster, wait: false)
        let producer = OutboxProducer(url: outbox.servers.databaseURL, table: outbox.table)
        defer { producer.stop() }
        try Self.relayMore(outbox, producer)
        // The replica lags while the relays push and mark, then the master dies.
        let killed = cluster.master
        let reconnect = try cluster.cutReplication()
        try Self.relayMore(outbox, producer, rows: 100)
        killed.stop()
        try reconnect()
        try cluster.waitForFailover(from: killed.port)
        try cluster.restartEmpty(killed)
        try cluster.waitUntilReplicaInSync()
        try Self.relayMore(outbox, producer)

        let count = try Self.drainAndCount(outbox, cluster, producer, relays)
        print("Sentinel kill -9 failover without WAIT: \(count)")
        // Lost: the jobs the master acknowledged while its replica lagged, whose rows were marked.
        #expect(count.lost > 0, "the rows marked while the replica lagged lost their jobs: \(count)")
        #expect(count.duplicated == 0 && count.orphaned == 0 && count.outOfOrder.isEmpty, "\(count)")
        for relay in relays { relay.signal(SIGTERM) }
        for relay in relays { #expect(relay.waitForExit(seconds: 10) == 0) }
    }

    @Test func followsTheSentinelsOverTLSWithAnACLUserAndNeverPrintsAPassword() throws {
        // Certificates of its own, removed afterwards (a folder of scripts/test-certs.sh).
        let certificateFolder = "/tmp/outbox-relay-sentinel-certs-\(getpid())"
        _ = try OperationsTests.run([OperationsTests.repository.appendingPathComponent("scripts/test-certs.sh").path, certificateFolder])
        defer { try? FileManager.default.removeItem(atPath: certificateFolder) }
        let security = SentinelCluster.Security(
            certificates: certificateFolder, password: "Data-S3cret-pw", user: "relay", userPassword: "Us3r-S3cret-pw",
            sentinelPassword: "Sent1nel-S3cret-pw")
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let cluster = try SentinelCluster(security: security)
        defer { cluster.destroy() }
        let passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("sentinel-password-\(getpid())").path
        try security.sentinelPassword.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: passwordFile) }
        let certificates = security.certificates
        let relays = try Self.relays(
            outbox, cluster, wait: true, url: "rediss://\(security.user):\(security.userPassword)@\(SentinelCluster.masterName)/0",
            more: [
                "--redis-sentinel-password-file", passwordFile, "--redis-tls-ca", "\(certificates)/ca.crt",
                "--redis-tls-cert", "\(certificates)/client.crt", "--redis-tls-key", "\(certificates)/client.key", "--log-level", "debug",
            ])
        let producer = OutboxProducer(url: outbox.servers.databaseURL, table: outbox.table)
        defer { producer.stop() }
        try Self.relayMore(outbox, producer)
        try Self.plannedFailover(outbox, cluster, producer)

        let count = try Self.drainAndCount(outbox, cluster, producer, relays)
        #expect(count.lost == 0 && count.duplicated == 0 && count.orphaned == 0 && count.outOfOrder.isEmpty, "\(count)")
        for relay in relays { relay.signal(SIGTERM) }
        for relay in relays { #expect(relay.waitForExit(seconds: 10) == 0) }
        for relay in relays {
            for secret in [security.password, security.userPassword, security.sentinelPassword] {
                #expect(!relay.log.contains(secret), "a password in the output")
            }
        }
    }
}
