import Foundation
import OutboxRelay
import OutboxRelayIO

/// The servers and the relay executable a benchmark run uses, and the set-up they share.
struct BenchServers {
    let databaseURL: String
    let redisPort: Int
    let relay: String

    var redisURL: String { "redis://127.0.0.1:\(redisPort)/0" }

    func postgres() throws -> PostgresConnection {
        try PostgresConnection(connectionString: databaseURL)
    }

    func redis() throws -> RedisConnection {
        try RedisConnection(endpoint: RedisEndpoint(address: .tcp(host: "127.0.0.1", port: redisPort)), timeout: 30)
    }

    /// A fresh outbox table (with the relay's indexes) holding `rows` jobs of about `payloadBytes`
    /// bytes over `keys` split keys.
    func createTable(_ name: String, rows: Int, payloadBytes: Int, keys: Int, notify: Bool = false) throws -> OutboxQueries {
        let postgres = try postgres()
        let queries = OutboxQueries(table: try TableName(name))
        try postgres.execute("DROP TABLE IF EXISTS \(name), \(name)_dead_letters")
        for statement in queries.createStatements { try postgres.execute(statement) }
        if notify {
            for statement in queries.notifyStatements(channel: "outbox_relay") { try postgres.execute(statement) }
        }
        if rows > 0 {
            try postgres.query(SQLStatement(
                """
                INSERT INTO \(name) (split_key, format, payload, created_at) \
                SELECT 'k' || (n % $2::int), 'sidekiq5', convert_to(json_build_object('class', 'BenchJob', \
                'queue', 'k' || (n % $2::int), 'args', json_build_array(n, repeat('x', $3::int)), \
                'jid', lpad(to_hex(n), 24, '0'), 'retry', true)::text, 'UTF8'), now() AT TIME ZONE 'utc' \
                FROM generate_series(1, $1::int) AS n ORDER BY n
                """, [String(rows), String(keys), String(max(0, payloadBytes - 110))]))
            try postgres.execute("VACUUM ANALYZE \(name)")
        }
        return queries
    }

    func startRelay(table: String, extra: [String] = []) throws -> RelayUnderTest {
        try RelayUnderTest(
            executable: relay,
            arguments: ["--database-url", databaseURL, "--redis-url", redisURL, "--table", table, "--log-level", "info"] + extra)
    }

    /// The jobs waiting in `queues` (LLEN of each, summed), asked 1,000 queues per round trip.
    func countJobs(queues: [String]) throws -> Int {
        let redis = try redis()
        var total = 0
        for start in stride(from: 0, to: queues.count, by: 1000) {
            for reply in try redis.send(queues[start..<min(start + 1000, queues.count)].map { RedisCommand("LLEN", $0) }) {
                guard case .integer(let n) = reply else { throw BenchError("LLEN answered \(reply)") }
                total += Int(n)
            }
        }
        return total
    }

    func flushRedis() throws {
        _ = try redis().send([RedisCommand("FLUSHALL")])
    }
}

/// Where the figures were measured.
struct MachineInfo {
    let cpu: String
    let cores: Int
    let memoryGB: Int
    let postgres: String
    let redis: String
    let date: String

    static func current(servers: BenchServers) -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last ?? "unknown"
        let postgresVersion = (try? servers.postgres().query(SQLStatement("SHOW server_version")).text(0, 0)) ?? nil
        let info = (try? servers.redis().send([RedisCommand("INFO", "server")])[0].text) ?? nil
        let redisVersion = info?.split(separator: "\r\n").first { $0.hasPrefix("redis_version:") }?.split(separator: ":").last
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        return MachineInfo(
            cpu: model.trimmingCharacters(in: .whitespaces), cores: ProcessInfo.processInfo.activeProcessorCount,
            memoryGB: Int(ProcessInfo.processInfo.physicalMemory / 1_073_741_824), postgres: postgresVersion ?? "?",
            redis: redisVersion.map(String.init) ?? "?", date: formatter.string(from: Date()))
    }
}
