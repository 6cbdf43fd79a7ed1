import ArgumentParser
import Foundation
import OutboxRelay
import OutboxRelayIO

/// Where the outbox table and Redis are; shared by every subcommand.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("libpq connection string or postgresql:// URL (default: $DATABASE_URL).", valueName: "url"))
    var databaseURL: String?

    @Option(help: ArgumentHelp("redis://[user:password@]host:port/db or unix:///path (default: $REDIS_URL).", valueName: "url"))
    var redisURL: String?

    @Option(help: ArgumentHelp("Read the database password from this file (for example a systemd credential); overrides the URL's.", valueName: "path"))
    var databasePasswordFile: String?

    @Option(help: ArgumentHelp("Read the Redis password from this file; overrides the URL's.", valueName: "path"))
    var redisPasswordFile: String?

    @Option(name: .customLong("redis-tls-ca"), help: ArgumentHelp("CA certificate (PEM) to verify a rediss:// server with (default: the system's trust store).", valueName: "path"))
    var redisTLSCA: String?

    @Option(name: .customLong("redis-tls-cert"), help: ArgumentHelp("Client certificate (PEM) for rediss://.", valueName: "path"))
    var redisTLSCert: String?

    @Option(name: .customLong("redis-tls-key"), help: ArgumentHelp("Client key (PEM) for rediss://.", valueName: "path"))
    var redisTLSKey: String?

    struct Resolved {
        let databaseURL: String
        let databasePassword: String?
        let redis: RedisEndpoint
        let redisTLS: RedisTLS
        let redactor: SecretRedactor
    }

    /// The URLs from the flags or the environment, checked; errors name the problem, never a password.
    func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Resolved {
        let databaseURL = try Self.databaseURL(databaseURL, environment: environment)
        guard let redisURL = redisURL ?? environment["REDIS_URL"], !redisURL.isEmpty else {
            throw ValidationError("--redis-url is missing (or set REDIS_URL)")
        }
        var redis: RedisEndpoint
        do {
            redis = try RedisEndpoint(url: redisURL)
        } catch {
            throw ValidationError("--redis-url: \(SecretRedactor(secrets: []).adding(candidatesIn: redisURL).redact(error.message))")
        }
        let databasePassword = try databasePasswordFile.map { try Self.readSecret($0, flag: "--database-password-file") }
        if let redisPasswordFile { redis.password = try Self.readSecret(redisPasswordFile, flag: "--redis-password-file") }
        for (flag, path) in [("--redis-tls-ca", redisTLSCA), ("--redis-tls-cert", redisTLSCert), ("--redis-tls-key", redisTLSKey)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) { throw ValidationError("\(flag): cannot read \(path)") }
        }
        if (redisTLSCert == nil) != (redisTLSKey == nil) {
            throw ValidationError("--redis-tls-cert and --redis-tls-key go together")
        }
        let tls = RedisTLS(caFile: redisTLSCA, certificateFile: redisTLSCert, keyFile: redisTLSKey)
        let redactor = SecretRedactor(connectionString: databaseURL).adding(candidatesIn: redisURL)
            .adding([redis.password, databasePassword].compactMap { $0 })
        return Resolved(databaseURL: databaseURL, databasePassword: databasePassword, redis: redis, redisTLS: tls, redactor: redactor)
    }

    /// A password file's content without its trailing newline.
    static func readSecret(_ path: String, flag: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("\(flag): cannot read \(path)")
        }
        let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        guard !secret.isEmpty else { throw ValidationError("\(flag): \(path) is empty") }
        return secret
    }

    /// The database URL from the flag or `DATABASE_URL`, checked by libpq.
    static func databaseURL(_ flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        guard let url = flag ?? environment["DATABASE_URL"], !url.isEmpty else {
            throw ValidationError("--database-url is missing (or set DATABASE_URL)")
        }
        do {
            try PostgresConnectionString.validate(connectionString: url)
        } catch {
            throw ValidationError("--database-url: \(SecretRedactor(connectionString: url).redact(error.message))")
        }
        return url
    }
}
