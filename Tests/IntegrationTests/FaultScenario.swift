import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Tens of thousands of rows over several split keys, two or three relay processes with small
/// batches, private PostgreSQL and Redis servers to break, and the final check: every row pushed
/// exactly once, marked, and in row order per queue.
final class FaultScenario {
    /// The split keys, each also the name of its rows' queue.
    let keys: [String]

    let postgres: PrivatePostgres
    let redis: PrivateRedis
    let table = try! TableName("event_store_outbox")
    private(set) var ids: [String: [Int64]] = [:]
    private(set) var relays: [RelayProcess?]
    let relayArguments: [String]
    private var admin: PostgresConnection?

    init(instances: Int, rows: Int, keys: Int = 4, batchSize: Int = 20, redisArguments: [String] = []) throws {
        self.keys = (0..<keys).map { "k\($0)" }
        postgres = try PrivatePostgres()
        redis = try PrivateRedis(extraArguments: redisArguments)
        relays = Array(repeating: nil, count: instances)
        relayArguments = [
            "--database-url", postgres.url, "--redis-url", "redis://127.0.0.1:\(redis.port)/0", "--batch-size", String(batchSize),
            "--sleep-on-empty", "0.05", "--network-timeout", "1", "--log-level", "info",
        ]
        let connection = try adminConnection()
        for statement in OutboxQueries(table: table).createStatements { try connection.execute(statement) }
        try connection.query(SQLStatement(
            """
            INSERT INTO event_store_outbox (split_key, format, payload, created_at) \
            SELECT 'k' || (n % $2::int), 'sidekiq5', convert_to(json_build_object('class', 'FaultJob', 'queue', 'k' || (n % $2::int), \
            'args', json_build_array(n), 'jid', lpad(to_hex(n), 24, '0'))::text, 'UTF8'), now() AT TIME ZONE 'utc' \
            FROM generate_series(1, $1::int) AS n ORDER BY n
            """, [String(rows), String(keys)]))
        let all = try connection.query(SQLStatement("SELECT split_key, id FROM event_store_outbox ORDER BY id"))
        for row in 0..<all.count { ids[all.text(row, 0)!, default: []].append(all.int64(row, 1)!) }
    }

    deinit {
        for relay in relays.compactMap({ $0 }) where relay.process.isRunning { relay.signal(SIGKILL) }
        redis.destroy()
        postgres.destroy()
    }

    /// A connection for the test's own queries, made again after a fault broke it.
    func adminConnection() throws -> PostgresConnection {
        if let admin, admin.isHealthy { return admin }
        admin = try PostgresConnection(connectionString: postgres.url)
        return admin!
    }

    func startAll() throws {
        for index in relays.indices { try start(index) }
    }

    func start(_ index: Int) throws {
        relays[index] = try RelayProcess(relayArguments)
    }

    func kill(_ index: Int, signal: Int32 = SIGKILL) {
        relays[index]?.signal(signal)
        _ = relays[index]?.waitForExit(seconds: 10)
    }

    func pending() -> Int? {
        try? adminConnection().query(SQLStatement("SELECT count(*) FROM event_store_outbox WHERE enqueued_at IS NULL")).int64(0, 0).map(Int.init)
    }

    /// Runs `fault` again and again until every row is marked (or `seconds` pass).
    func drain(seconds: Double = 180, fault: (Int) throws -> Void) throws {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var round = 0
        while Date() < deadline {
            if pending() == 0 { return }
            try fault(round)
            round += 1
        }
        throw TestSetupError.timedOut("rows still pending after \(seconds) s: \(pending() ?? -1); relay output: \(logs.suffix(3000))")
    }

    /// Stops every relay with SIGTERM, then checks Redis and the table.
    func verify() throws {
        for index in relays.indices where relays[index]?.process.isRunning == true {
            // A relay restarted a moment ago may not have its signal handlers yet.
            relays[index]!.waitForLog("info ready", seconds: 10)
            relays[index]!.signal(SIGTERM)
            #expect(relays[index]!.waitForExit(seconds: 10) == 0, "relay \(index) exits 0 on SIGTERM")
        }
        #expect(pending() == 0, "every row is marked")
        let client = try RedisConnection(endpoint: redis.adminEndpoint, timeout: 5)
        var total = 0
        for key in keys {
            guard case .array(let items) = try client.send([RedisCommand("LRANGE", "queue:\(key)", "0", "-1")])[0] else {
                Issue.record("queue:\(key) is missing")
                continue
            }
            let jids = items.reversed().map { item -> Int64 in
                let object = try! JSONSerialization.jsonObject(with: Data((item.text ?? "").utf8)) as! [String: Any]
                return Int64((object["args"] as! [NSNumber])[0].int64Value)
            }
            total += jids.count
            let expected = ids[key]!.map { $0 }
            let duplicates = jids.count - Set(jids).count
            let missing = Set(expected).subtracting(jids).count
            #expect(duplicates == 0, "queue \(key): \(duplicates) jobs pushed twice")
            #expect(missing == 0, "queue \(key): \(missing) jobs lost")
            #expect(jids == expected, "queue \(key) holds every job once, in row order")
        }
        #expect(total == ids.values.map(\.count).reduce(0, +))
    }

    /// The output of every relay process still known, for failure messages.
    var logs: String { relays.compactMap { $0?.log }.joined(separator: "\n---\n") }
}
