import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Passwords that parsers read differently (unencoded `@`, `/`, `?`, `%`, no user, a query
/// parameter, libpq's `key=value` words): the built binary never shows one, nor any piece of one,
/// in its validation errors, its logs while it retries, `status`, or `/metrics`.
@Suite(.serialized) struct PasswordRedactionTests {
    struct Case {
        let name: String
        let arguments: [String]
        var environment: [String: String] = [:]
        /// The password and every piece of it that must not appear.
        let secrets: [String]
        /// Exit status of a command that ends by itself; nil for a relay that keeps retrying.
        let status: Int32?
        /// What the output must say instead (so the case exercised the path it names).
        let says: String
    }

    static func cases(_ outbox: TestOutbox) -> [Case] {
        let pg = outbox.servers.databaseURL
        let pgPort = pg.split(separator: ":").last!.split(separator: "/").first!
        let redisPort = outbox.servers.redisPort
        let good = ["--redis-url", outbox.redisURL, "--table", outbox.table.description]
        func database(_ password: String, port: String = String(pgPort)) -> String {
            "postgresql://postgres:\(password)@127.0.0.1:\(port)/postgres"
        }
        let invalidDatabase = "--database-url: invalid database URL"
        return [
            Case(name: "@ in the database password, run", arguments: ["--database-url", database("Secret@SecretHalf")] + good,
                secrets: ["Secret@SecretHalf", "SecretHalf", "Secret"], status: 64, says: invalidDatabase),
            Case(name: "@ in the database password, status", arguments: ["status", "--database-url", database("Secret@SecretHalf")],
                secrets: ["Secret@SecretHalf", "SecretHalf", "Secret"], status: 64, says: invalidDatabase),
            Case(name: "@ in DATABASE_URL", arguments: good, environment: ["DATABASE_URL": database("EnvSecret@EnvHalf")],
                secrets: ["EnvSecret", "EnvHalf"], status: 64, says: invalidDatabase),
            Case(name: "/ in the database password", arguments: ["status", "--database-url", database("S3cr/etSecret")],
                secrets: ["S3cr/etSecret", "S3cr", "etSecret"], status: 64, says: invalidDatabase),
            Case(name: "% in the database password", arguments: ["status", "--database-url", database("50%offSecret")],
                secrets: ["50%offSecret", "offSecret"], status: 64, says: invalidDatabase),
            Case(name: "an encoded @, server down, run", arguments: ["--database-url", database("Qm%40rkSecret", port: "1"), "--log-level", "debug"] + good,
                secrets: ["Qm%40rkSecret", "Qm@rkSecret", "rkSecret"], status: nil, says: "cannot connect to PostgreSQL"),
            Case(name: "an encoded @, server down, status", arguments: ["status", "--database-url", database("Qm%40rkSecret", port: "1")],
                secrets: ["Qm%40rkSecret", "Qm@rkSecret", "rkSecret"], status: 1, says: "cannot connect to PostgreSQL"),
            Case(name: "libpq words after password=", arguments: ["status", "--database-url", "host=127.0.0.1 port=\(pgPort) password=SecA SecretB"],
                secrets: ["SecA", "SecretB"], status: 64, says: invalidDatabase),
            Case(name: "an encoded @ in the user name and the password", arguments: ["status", "--database-url", "postgresql://us%40er:Pw%40Secret@127.0.0.1:\(pgPort)/postgres"],
                secrets: ["Pw%40Secret", "Pw@Secret"], status: 1, says: #"role "us@er" does not exist"#),
            Case(name: "a good URL, status", arguments: ["status", "--database-url", database("Good%2FSecret"), "--table", outbox.table.description],
                secrets: ["Good%2FSecret", "Good/Secret", "Good", "Secret"], status: 0, says: "split_key"),
            Case(name: "/ in the Redis password, bad port", arguments: ["--database-url", pg, "--redis-url", "redis://:S3cr/et+Pw==@127.0.0.1:6379x/0"],
                secrets: ["S3cr/et+Pw==", "S3cr", "et+Pw=="], status: 64, says: "--redis-url: invalid Redis URL"),
            Case(name: "? in the Redis password", arguments: ["--database-url", pg, "--redis-url", "redis://:Qu?erySecret@127.0.0.1:\(redisPort)/0"],
                secrets: ["Qu?erySecret", "erySecret"], status: 64, says: "--redis-url: invalid Redis URL"),
            Case(name: "no scheme separator", arguments: ["--database-url", pg, "--redis-url", "redis:/:NoSchemeSecret@127.0.0.1:\(redisPort)/0"],
                secrets: ["NoSchemeSecret"], status: 64, says: "--redis-url: invalid Redis URL"),
            Case(name: "/ in the Redis password, AUTH refused", arguments: ["--database-url", pg, "--redis-url", "redis://:S3cr/et+Pw==@127.0.0.1:\(redisPort)/0", "--log-level", "debug"] + good.dropFirst(2),
                secrets: ["S3cr/et+Pw==", "S3cr", "et+Pw=="], status: nil, says: "refused AUTH"),
            Case(name: "@ in the Redis password with a user", arguments: ["--database-url", pg, "--redis-url", "redis://relay:Us3r@Secret@127.0.0.1:\(redisPort)/0", "--log-level", "debug"] + good.dropFirst(2),
                secrets: ["Us3r@Secret", "Us3r", "Secret"], status: nil, says: "refused AUTH"),
            Case(name: "a Redis password without a user", arguments: ["--database-url", pg, "--redis-url", "redis://NoUserSecret@127.0.0.1:\(redisPort)/0", "--log-level", "debug"] + good.dropFirst(2),
                secrets: ["NoUserSecret"], status: nil, says: "refused AUTH"),
            Case(name: "a Redis password as a query parameter", arguments: ["--database-url", pg, "--redis-url", "redis://127.0.0.1:\(redisPort)/0?password=Query%2FPass", "--log-level", "debug"] + good.dropFirst(2),
                secrets: ["Query%2FPass", "Query/Pass", "Query"], status: nil, says: "refused AUTH"),
            Case(name: "rediss, nobody listening", arguments: ["--database-url", pg, "--redis-url", "rediss://:Tls/Secret@127.0.0.1:1/0", "--log-level", "debug"] + good.dropFirst(2),
                secrets: ["Tls/Secret", "Tls", "Secret"], status: nil, says: "cannot connect to Redis"),
            Case(name: "a URL as a stray argument", arguments: ["status", "--database-url", database("Stray@Secret"), "extra", "redis://:ArgSecret@h/0"],
                secrets: ["Stray@Secret", "Stray", "Secret", "ArgSecret"], status: 64, says: "unexpected argument"),
        ]
    }

    static func occurrences(of text: String, in log: String) -> Int { log.components(separatedBy: text).count - 1 }

    @Test func noFormOfAPasswordEverShows() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        for item in Self.cases(outbox) {
            let output: String
            if let status = item.status {
                let (exit, log) = try RelayProcess.run(item.arguments, environment: item.environment)
                #expect(exit == status, "\(item.name): \(log)")
                output = log
            } else {
                let relay = try RelayProcess(item.arguments, environment: item.environment)
                // Seen more than once: the error, then its retry.
                try waitUntil("\(item.name): a retry logged", seconds: 20) { Self.occurrences(of: item.says, in: relay.log) >= 2 }
                relay.signal(SIGTERM)
                #expect(relay.waitForExit(seconds: 10) == 0, "\(item.name): \(relay.log)")
                output = relay.log
            }
            #expect(output.localizedCaseInsensitiveContains(item.says), "\(item.name): \(output)")
            for secret in item.secrets {
                #expect(!output.contains(secret), "\(item.name): '\(secret)' shown in \(output)")
            }
        }
    }

    @Test func metricsAndHealthShowNoPassword() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let port = freePort()
        let relay = try RelayProcess([
            "--database-url", "postgresql://postgres:Metrics%40Secret@127.0.0.1:1/postgres",
            "--redis-url", "redis://:Metrics/Secret@127.0.0.1:\(outbox.servers.redisPort)/0", "--metrics-listen", "127.0.0.1:\(port)",
            "--table", outbox.table.description, "--network-timeout", "1",
        ])
        defer { relay.signal(SIGKILL) }
        try waitUntil("metrics served", seconds: 10) { (try? MetricsTests.get(port, "/metrics").0) == 200 }
        try waitUntil("the failure logged", seconds: 10) { relay.log.contains("cannot connect to PostgreSQL") }
        var output = relay.log
        for path in ["/metrics", "/healthz", "/readyz"] { output += try MetricsTests.get(port, path).1 }
        for secret in ["Metrics%40Secret", "Metrics@Secret", "Metrics/Secret", "Metrics", "Secret"] {
            #expect(!output.contains(secret), "'\(secret)' shown in \(output)")
        }
    }
}
