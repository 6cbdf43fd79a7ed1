import Foundation
import Logging
import OutboxRelay
import OutboxRelayIO
import Testing

/// The PostgreSQL and Redis servers that `make test` starts (scripts/with-servers.sh), and a
/// private corner of each for one test: its own outbox table and its own Redis database.
struct TestServers {
    let databaseURL: String
    let redisURL: String
    let redisPort: Int

    static func fromEnvironment() throws -> TestServers {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["OUTBOX_TEST_DATABASE_URL"], let redisURL = environment["OUTBOX_TEST_REDIS_URL"],
            let port = environment["OUTBOX_TEST_REDIS_PORT"].flatMap(Int.init)
        else {
            Issue.record("OUTBOX_TEST_DATABASE_URL and OUTBOX_TEST_REDIS_URL are not set: run the tests with 'make test', which starts both servers")
            throw TestSetupError.serversMissing
        }
        return TestServers(databaseURL: databaseURL, redisURL: redisURL, redisPort: port)
    }
}

enum TestSetupError: Error {
    case serversMissing
    case timedOut(String)
}

/// One test's outbox table and Redis database, removed again by ``drop()``.
final class TestOutbox: @unchecked Sendable {
    let servers: TestServers
    let table: TableName
    let layout: OutboxLayout
    let redisDatabase: Int
    let postgres: PostgresConnection
    let redis: RedisConnection

    private static let counter = Counter()
    private var otherDatabases: [String] = []

    init(layout: OutboxLayout = .res, migrate: Bool = true) throws {
        servers = try TestServers.fromEnvironment()
        let number = TestOutbox.counter.next()
        self.layout = layout
        table = try TableName("outbox_test_\(getpid())_\(number)")
        redisDatabase = 1 + number % 250
        postgres = try PostgresConnection(connectionString: servers.databaseURL)
        var endpoint = try RedisEndpoint(url: servers.redisURL)
        endpoint.database = redisDatabase
        redis = try RedisConnection(endpoint: endpoint, timeout: 5)
        _ = try redis.send([RedisCommand("FLUSHDB")])
        if migrate {
            for statement in queries.createStatements { try postgres.execute(statement) }
        }
    }

    var queries: OutboxQueries { OutboxQueries(layout: layout, table: table) }

    var redisEndpoint: RedisEndpoint {
        var endpoint = try! RedisEndpoint(url: servers.redisURL)
        endpoint.database = redisDatabase
        return endpoint
    }

    var redisURL: String { "redis://127.0.0.1:\(servers.redisPort)/\(redisDatabase)" }

    func configuration(splitKeys: [SplitKey]? = nil, batchSize: Int = 100) -> RelayConfiguration {
        RelayConfiguration(
            databaseURL: servers.databaseURL, redis: redisEndpoint, layout: layout, table: table, splitKeys: splitKeys, batchSize: batchSize,
            sleepOnEmpty: 0.05, networkTimeout: 5)
    }

    /// Inserts rows `(split_key, payload)` in order in one statement; returns their ids. Without
    /// `createdAt` the rows are created now (UTC).
    @discardableResult
    func insert(_ rows: [(SplitKey, String)], createdAt: String? = "2024-01-02 03:04:05.123456") throws -> [Int64] {
        if layout == .reliableJob { return try insertReliableJobs(rows.map(\.1), createdAt: createdAt) }
        var ids: [Int64] = []
        for chunk in stride(from: 0, to: rows.count, by: 5000).map({ Array(rows[$0..<min($0 + 5000, rows.count)]) }) {
            func quoted(_ text: String) -> String { "\"\(text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }
            let keys = chunk.map { $0.0.value.map(quoted) ?? "NULL" }.joined(separator: ",")
            let payloads = chunk.map { quoted($0.1) }.joined(separator: ",")
            let result = try postgres.query(
                SQLStatement(
                    """
                    INSERT INTO \(table.quoted) (split_key, format, payload, created_at) \
                    SELECT k, 'sidekiq5', convert_to(p, 'UTF8'), COALESCE($3::timestamp, now() AT TIME ZONE 'utc') FROM unnest($1::varchar[], $2::text[]) WITH ORDINALITY AS u(k, p, n) ORDER BY n \
                    RETURNING id
                    """, ["{\(keys)}", "{\(payloads)}", createdAt]))
            ids += (0..<result.count).map { result.int64($0, 0)! }
        }
        return ids.sorted()
    }

    /// Inserts one row whose payload is the raw `bytes`, valid UTF-8 or not.
    @discardableResult
    func insertRaw(_ key: SplitKey, _ bytes: [UInt8]) throws -> Int64 {
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        return try postgres.query(SQLStatement(
            "INSERT INTO \(table.quoted) (split_key, format, payload, created_at) VALUES ($1, 'sidekiq5', decode($2, 'hex'), now() AT TIME ZONE 'utc') RETURNING id",
            [key.value, hex])).int64(0, 0)!
    }

    /// sidekiq-reliable_job rows: jid and job_class taken from the payload where it has them.
    private func insertReliableJobs(_ payloads: [String], createdAt: String?) throws -> [Int64] {
        var ids: [Int64] = []
        for payload in payloads {
            let result = try postgres.query(SQLStatement(
                """
                INSERT INTO \(table.quoted) (jid, job_class, payload, created_at, updated_at) \
                SELECT coalesce(p->>'jid', md5(random()::text)), coalesce(p->>'class', '?'), p, c, c \
                FROM (SELECT $1::json AS p, COALESCE($2::timestamp, now() AT TIME ZONE 'utc') AS c) AS v RETURNING id
                """, [payload, createdAt]))
            ids.append(result.int64(0, 0)!)
        }
        return ids
    }

    func pendingCount() throws -> Int {
        let condition = layout == .res ? "enqueued_at IS NULL" : "status = 'pending'"
        return try Int(postgres.query(SQLStatement("SELECT count(*) FROM \(table.quoted) WHERE \(condition)")).int64(0, 0)!)
    }

    /// `(id, error)` of every dead letter, in id order.
    func deadLetters() throws -> [(Int64, String)] {
        let rows = try postgres.query(SQLStatement("SELECT id, error FROM \(queries.deadLetterTable.quoted) ORDER BY id"))
        return (0..<rows.count).map { (rows.int64($0, 0)!, rows.text($0, 1)!) }
    }

    func enqueuedIDs() throws -> [Int64] {
        let rows = try postgres.query(SQLStatement("SELECT id FROM \(table.quoted) WHERE enqueued_at IS NOT NULL ORDER BY id"))
        return (0..<rows.count).map { rows.int64($0, 0)! }
    }

    /// A queue's jobs in the order Sidekiq will run them (BRPOP takes from the right).
    func queue(_ name: String) throws -> [String] {
        guard case .array(let items) = try redis.send([RedisCommand("LRANGE", "queue:\(name)", "0", "-1")])[0] else { return [] }
        return items.reversed().map { $0.text ?? "" }
    }

    func set(_ key: String) throws -> Set<String> {
        guard case .array(let items) = try redis.send([RedisCommand("SMEMBERS", key)])[0] else { return [] }
        return Set(items.compactMap(\.text))
    }

    /// A database of its own in the test cluster (`options` as `CREATE DATABASE` takes them) with
    /// this outbox's tables, dropped again by `drop()`; returns its URL and a connection.
    func otherDatabase(_ suffix: String, options: String = "") throws -> (url: String, connection: PostgresConnection) {
        let database = "outbox_\(suffix)_\(getpid())"
        _ = try? postgres.execute("DROP DATABASE IF EXISTS \(database)")
        try postgres.execute("CREATE DATABASE \(database) \(options)")
        otherDatabases.append(database)
        let base = servers.databaseURL
        let url = String(base[..<base.lastIndex(of: "/")!]) + "/\(database)"
        let connection = try PostgresConnection(connectionString: url)
        for statement in queries.createStatements { try connection.execute(statement) }
        return (url, connection)
    }

    func drop() {
        for database in otherDatabases { _ = try? postgres.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
        _ = try? postgres.execute("DROP TABLE IF EXISTS \(table.quoted), \(queries.deadLetterTable.quoted)")
        _ = try? redis.send([RedisCommand("FLUSHDB")])
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
func waitUntil(_ what: String, seconds: Double = 30, _ condition: () throws -> Bool) throws {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: 0.02)
    }
    throw TestSetupError.timedOut("timed out after \(seconds) s waiting for \(what)")
}

/// A loopback port nobody uses right now, for TCP and UDP, below the kernel's ephemeral range
/// (which starts at 32768 here), so no client socket of another test can be holding it meanwhile.
func freePort(excluding: Set<Int> = []) -> Int {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<500 {
        let port = Int.random(in: 10_000..<32_768, using: &generator)
        guard !excluding.contains(port) else { continue }
        let free = [SOCK_STREAM, SOCK_DGRAM].allSatisfy { type in
            let fd = socket(AF_INET, Int32(type.rawValue), 0)
            defer { close(fd) }
            return withLoopback(port: port) { bind(fd, $0, $1) } == 0
        }
        if free { return port }
    }
    fatalError("no free loopback port below 32768")
}

/// Calls `body` with the address 127.0.0.1:`port` (for bind or connect).
func withLoopback<R>(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}
