import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Fault injection with real processes and servers: whatever breaks, no job is lost or pushed
/// twice, and each queue keeps row order. Each test drains 30,000 rows over 4 split keys.
@Suite(.serialized) struct FaultTests {
    static let rows = 30_000

    @Test func killDashNineAtRandomMoments() throws {
        let scenario = try FaultScenario(instances: 3, rows: Self.rows)
        try scenario.startAll()
        var kills = 0
        try scenario.drain { _ in
            Thread.sleep(forTimeInterval: Double.random(in: 0.03...0.15))
            let victim = Int.random(in: 0..<3)
            scenario.kill(victim)
            try scenario.start(victim)
            kills += 1
        }
        #expect(kills >= 5, "the relays were killed \(kills) times")
        try scenario.verify()
    }

    /// 4,000 keys of 5 rows: the relays lease them in groups of 128, three groups in flight, while
    /// they are killed and their backends terminated at random moments.
    @Test func killDashNineAndTerminatedBackendsWhileLeasingManyKeysInGroups() throws {
        let scenario = try FaultScenario(instances: 3, rows: 20_000, keys: 4_000)
        try scenario.startAll()
        var faults = 0
        try scenario.drain { round in
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...0.1))
            if round % 2 == 0 {
                let victim = Int.random(in: 0..<3)
                scenario.kill(victim)
                try scenario.start(victim)
            } else {
                _ = try? scenario.adminConnection().query(SQLStatement(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'outbox-relay@%'"))
            }
            faults += 1
        }
        #expect(faults >= 5, "\(faults) faults before the rows ran out")
        #expect(scenario.logs.contains("outbox.split_keys="), "keys were leased in groups")
        try scenario.verify()
    }

    /// Only the sessions that fetch pages (the readers) are terminated, while the leasing sessions
    /// mark: each relay drops both and starts over, and nothing is lost or pushed twice.
    @Test func terminatedReadingSessions() throws {
        let scenario = try FaultScenario(instances: 2, rows: Self.rows)
        try scenario.startAll()
        var terminated = 0
        try scenario.drain { _ in
            Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.2))
            let killed = try? scenario.adminConnection().query(SQLStatement(
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'outbox-relay@%' \
                AND query LIKE 'SELECT id, payload, created_at, jid, running FROM%'
                """)).int64(0, 0)
            terminated += Int(killed ?? 0)
        }
        #expect(terminated >= 3, "\(terminated) reading sessions terminated before the rows ran out")
        #expect(scenario.logs.contains("PostgreSQL (reading session): "), "the failure names the reading session")
        #expect(!scenario.logs.contains("PostgreSQL (reading session): the transaction did not commit"), "a read has nothing to commit")
        try scenario.verify()
    }

    @Test func terminatedBackendsAndAPostgreSQLRestart() throws {
        let scenario = try FaultScenario(instances: 2, rows: Self.rows)
        try scenario.startAll()
        var restarted = false
        try scenario.drain { round in
            Thread.sleep(forTimeInterval: 0.3)
            if round == 3 && !restarted {
                try scenario.postgres.restart()
                restarted = true
            } else {
                _ = try? scenario.adminConnection().query(SQLStatement(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'outbox-relay@%'"))
            }
        }
        #expect(restarted, "PostgreSQL was restarted before the rows ran out")
        try scenario.verify()
    }

    @Test func redisDroppingClientsAndPausingPastTheTimeout() throws {
        let scenario = try FaultScenario(instances: 2, rows: Self.rows)
        try scenario.startAll()
        let admin = try RedisConnection(endpoint: scenario.redis.adminEndpoint, timeout: 5)
        var paused = false
        try scenario.drain { round in
            Thread.sleep(forTimeInterval: 0.3)
            if round == 3 {
                _ = try admin.send([RedisCommand("CLIENT", "PAUSE", "2500", "ALL")])
                paused = true
                Thread.sleep(forTimeInterval: 2.6)
            } else {
                _ = try admin.send([RedisCommand("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")])
            }
        }
        #expect(paused)
        try scenario.verify()
    }

    @Test func redisUnreachableForTenSeconds() throws {
        let scenario = try FaultScenario(
            instances: 2, rows: Self.rows, redisArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        try scenario.startAll()
        var outage = false
        try scenario.drain(seconds: 60) { _ in
            Thread.sleep(forTimeInterval: 0.3)
            guard !outage else { return }
            outage = true
            let admin = try RedisConnection(endpoint: scenario.redis.adminEndpoint, timeout: 5)
            _ = try? admin.send([RedisCommand("SHUTDOWN")])
            // A mark sent before Redis went (of rows it had) may still commit just after.
            Thread.sleep(forTimeInterval: 1)
            let before = scenario.pending()
            Thread.sleep(forTimeInterval: 9)
            #expect(scenario.pending() == before, "nothing is marked while Redis is unreachable")
            try scenario.redis.start()
        }
        #expect(outage, "Redis went away before the rows ran out")
        try scenario.verify()
    }

    @Test func sigtermDuringLargeBatches() throws {
        let scenario = try FaultScenario(instances: 2, rows: Self.rows * 2, batchSize: 1000)
        try scenario.startAll()
        var stops = 0
        try scenario.drain { _ in
            let victim = Int.random(in: 0..<2)
            guard let relay = scenario.relays[victim] else { return }
            relay.waitForLog("info ready", seconds: 10)
            Thread.sleep(forTimeInterval: Double.random(in: 0...0.2))
            relay.signal(SIGTERM)
            let started = Date()
            #expect(relay.waitForExit(seconds: 10) == 0, "SIGTERM exits 0")
            #expect(Date().timeIntervalSince(started) < 5, "and within seconds")
            try scenario.start(victim)
            stops += 1
        }
        #expect(stops >= 3, "stopped \(stops) times")
        try scenario.verify()
    }

    @Test func startsWhileBothServersAreDownAndWorksOnceTheyAreUp() throws {
        let scenario = try FaultScenario(instances: 1, rows: 2000)
        try scenario.postgres.stop()
        scenario.redis.stop()
        let notify = try NotifySocket()
        let relay = try RelayProcess(scenario.relayArguments, environment: ["NOTIFY_SOCKET": notify.path])
        var received: [String] = []
        #expect(notify.waitFor("READY=1", seconds: 10, into: &received), "READY=1 at start even while the servers are down")
        #expect(relay.process.isRunning)
        try scenario.postgres.start()
        try scenario.redis.start()
        #expect(notify.waitFor("READY=1", seconds: 20, into: &received), "READY=1 once both answer")
        try waitUntil("rows relayed", seconds: 60) { scenario.pending() == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        let errors = relay.log.split(separator: "\n").filter { $0.contains(" error ") }
        #expect(errors.count <= 3, "the outage is reported once per distinct problem: \(errors)")
    }
}
