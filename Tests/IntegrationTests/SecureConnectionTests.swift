import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// TLS to PostgreSQL (libpq) and to Redis (OpenSSL under the relay's Redis client) against a
/// throwaway CA, and passwords from every source, none of which may appear in the output.
@Suite(.serialized) struct SecureConnectionTests {
    /// A throwaway CA with server and client certificates, in a folder of its own that the
    /// caller removes (it holds private keys).
    static func certificates() -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-relay-certs-\(getpid())-\(UUID().uuidString.prefix(8))").path
        let script = OperationsTests.repository.appendingPathComponent("scripts/test-certs.sh").path
        _ = try? OperationsTests.run([script, folder])
        return folder
    }

    /// A private outbox with `rows` jobs in key `s`, on `postgres`.
    static func outbox(_ postgres: PrivatePostgres, password: String? = nil, rows: Int = 20) throws -> PostgresConnection {
        let connection = try PostgresConnection(connectionString: postgres.url, password: password)
        for statement in OutboxQueries(table: try TableName("event_store_outbox")).createStatements { try connection.execute(statement) }
        try connection.query(SQLStatement(
            """
            INSERT INTO event_store_outbox (split_key, format, payload, created_at) SELECT 's', 'sidekiq5', \
            convert_to(json_build_object('class', 'J', 'queue', 's', 'args', json_build_array(n))::text, 'UTF8'), now() \
            FROM generate_series(1, $1::int) AS n
            """, [String(rows)]))
        return connection
    }

    static func pending(_ connection: PostgresConnection) throws -> Int64 {
        try connection.query(SQLStatement("SELECT count(*) FROM event_store_outbox WHERE enqueued_at IS NULL")).int64(0, 0) ?? -1
    }

    /// A Redis that speaks only TLS with the certificates in `certs`, and requires client ones.
    static func tlsRedis(_ certs: String) throws -> PrivateRedis {
        try PrivateRedis(extraArguments: [
            "--port", "0", "--tls-port", "PORT", "--tls-cert-file", "\(certs)/server.crt", "--tls-key-file", "\(certs)/server.key",
            "--tls-ca-cert-file", "\(certs)/ca.crt", "--tls-auth-clients", "yes",
        ], tls: RedisTLS(caFile: "\(certs)/ca.crt", certificateFile: "\(certs)/client.crt", keyFile: "\(certs)/client.key"))
    }

    @Test func relaysOverTLSToRedisAndRefusesAnUnverifiedServer() throws {
        let certs = Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let redis = try Self.tlsRedis(certs)
        defer { redis.destroy() }
        let postgres = try PrivatePostgres()
        defer { postgres.destroy() }
        let database = try Self.outbox(postgres)
        let common = ["--database-url", postgres.url, "--redis-url", "rediss://localhost:\(redis.port)/0", "--network-timeout", "2"]

        let refused = try RelayProcess(common + ["--redis-tls-ca", "\(certs)/other-ca.crt"])
        refused.waitForLog("TLS handshake refused", seconds: 10)
        #expect(refused.process.isRunning, "the relay keeps retrying")
        refused.signal(SIGTERM)
        _ = refused.waitForExit(seconds: 10)
        #expect(refused.log.contains("TLS handshake refused: the server's certificate does not verify"), "\(refused.log)")
        #expect(try Self.pending(database) == 20, "nothing relayed to an unverified server")

        let noClientCertificate = try RelayProcess(common + ["--redis-tls-ca", "\(certs)/ca.crt"])
        noClientCertificate.waitForLog(" error ", seconds: 10)
        noClientCertificate.signal(SIGTERM)
        _ = noClientCertificate.waitForExit(seconds: 10)
        #expect(try Self.pending(database) == 20, "the server demands a client certificate")

        let relay = try RelayProcess(common + [
            "--redis-tls-ca", "\(certs)/ca.crt", "--redis-tls-cert", "\(certs)/client.crt", "--redis-tls-key", "\(certs)/client.key",
        ])
        try waitUntil("rows relayed over TLS") { try Self.pending(database) == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        let client = try RedisConnection(endpoint: redis.adminEndpoint, timeout: 5, tls: redis.tls)
        #expect(try client.send([RedisCommand("LLEN", "queue:s")])[0] == .integer(20))
    }

    @Test func relaysOverTLSToPostgreSQLWithVerifyFull() throws {
        let certs = Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: certs) }
        let postgres = try PrivatePostgres(tlsFrom: certs)
        defer { postgres.destroy() }
        let database = try Self.outbox(postgres)
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let base = "postgresql://postgres@localhost:\(postgres.port)/postgres?sslmode=verify-full"

        let (status, refusedLog) = try RelayProcess.run(
            ["status", "--database-url", base + "&sslrootcert=\(certs)/other-ca.crt"])
        #expect(status == 1)
        #expect(refusedLog.contains("certificate verify failed"), "\(refusedLog)")

        let relay = try RelayProcess(["--database-url", base + "&sslrootcert=\(certs)/ca.crt", "--redis-url", outbox.redisURL])
        try waitUntil("rows relayed with TLS to PostgreSQL") { try Self.pending(database) == 0 }
        relay.signal(SIGTERM)
        #expect(relay.waitForExit(seconds: 10) == 0)
        let encrypted = try database.query(SQLStatement(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name LIKE 'outbox-relay@%'"))
        #expect(encrypted.count == 1)
        #expect(try outbox.queue("s").count == 20)
    }

    @Test func takesPasswordsFromEverySourceAndNeverShowsThem() throws {
        let secret = "pg-Secret-7731"
        let redisSecret = "redis-Secret-5519"
        let postgres = try PrivatePostgres(password: secret)
        defer { postgres.destroy() }
        let redis = try PrivateRedis(extraArguments: ["--requirepass", redisSecret], password: redisSecret)
        defer { redis.destroy() }
        let database = try Self.outbox(postgres, password: secret, rows: 0)
        let files = FileManager.default.temporaryDirectory.appendingPathComponent("secrets-\(getpid())")
        try FileManager.default.createDirectory(at: files, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: files) }
        try "\(secret)\n".write(to: files.appendingPathComponent("db"), atomically: true, encoding: .utf8)
        try "\(redisSecret)\n".write(to: files.appendingPathComponent("redis"), atomically: true, encoding: .utf8)
        try "127.0.0.1:\(postgres.port):postgres:postgres:\(secret)\n".write(to: files.appendingPathComponent("pgpass"), atomically: true, encoding: .utf8)
        chmod(files.appendingPathComponent("pgpass").path, 0o600)
        try "[relaytest]\nhost=127.0.0.1\nport=\(postgres.port)\nuser=postgres\ndbname=postgres\npassword=\(secret)\n"
            .write(to: files.appendingPathComponent("pg_service.conf"), atomically: true, encoding: .utf8)
        let redisFile = ["--redis-password-file", files.appendingPathComponent("redis").path]
        let redisURL = "redis://127.0.0.1:\(redis.port)/0"
        let sources: [(String, [String], [String: String])] = [
            ("URL", ["--database-url", postgres.url.replacingOccurrences(of: "postgres@", with: "postgres:\(secret)@"), "--redis-url", "redis://:\(redisSecret)@127.0.0.1:\(redis.port)/0"], [:]),
            ("PGPASSWORD", ["--database-url", postgres.url, "--redis-url", redisURL] + redisFile, ["PGPASSWORD": secret]),
            ("PGPASSFILE", ["--database-url", postgres.url, "--redis-url", redisURL] + redisFile, ["PGPASSFILE": files.appendingPathComponent("pgpass").path]),
            ("a service file", ["--database-url", "service=relaytest", "--redis-url", redisURL] + redisFile,
                ["PGSERVICEFILE": files.appendingPathComponent("pg_service.conf").path]),
            ("password files", ["--database-url", postgres.url, "--redis-url", redisURL, "--database-password-file", files.appendingPathComponent("db").path] + redisFile, [:]),
        ]
        for (n, source) in sources.enumerated() {
            try database.query(SQLStatement(
                "INSERT INTO event_store_outbox (split_key, format, payload, created_at) VALUES ('s', 'sidekiq5', convert_to($1, 'UTF8'), now())",
                [#"{"class":"J","queue":"s","args":[\#(n)]}"#]))
            let relay = try RelayProcess(source.1 + ["--log-level", "debug"], environment: source.2)
            try waitUntil("relayed with the password from \(source.0)") { try Self.pending(database) == 0 }
            relay.signal(SIGTERM)
            #expect(relay.waitForExit(seconds: 10) == 0)
            #expect(!relay.log.contains(secret) && !relay.log.contains(redisSecret), "\(source.0): \(relay.log)")
        }
        // A wrong password: one clear error, retried, and no secret in it.
        let wrong = try RelayProcess(["--database-url", postgres.url.replacingOccurrences(of: "postgres@", with: "postgres:not-\(secret)@"), "--redis-url", redisURL] + redisFile)
        wrong.waitForLog("password authentication failed", seconds: 10)
        wrong.signal(SIGTERM)
        _ = wrong.waitForExit(seconds: 10)
        #expect(wrong.log.contains("password authentication failed"), "\(wrong.log)")
        #expect(!wrong.log.contains(secret))
        let (_, statusOutput) = try RelayProcess.run(["status", "--database-url", postgres.url.replacingOccurrences(of: "postgres@", with: "postgres:\(secret)x@")])
        #expect(statusOutput.contains("password authentication failed") && !statusOutput.contains(secret), "\(statusOutput)")
    }
}
