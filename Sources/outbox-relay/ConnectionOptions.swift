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

    struct Resolved {
        let databaseURL: String
        let redis: RedisEndpoint
        let redactor: SecretRedactor
    }

    /// The URLs from the flags or the environment, checked; errors name the problem, never a password.
    func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Resolved {
        let databaseURL = try Self.databaseURL(databaseURL, environment: environment)
        guard let redisURL = redisURL ?? environment["REDIS_URL"], !redisURL.isEmpty else {
            throw ValidationError("--redis-url is missing (or set REDIS_URL)")
        }
        let redis: RedisEndpoint
        do {
            redis = try RedisEndpoint(url: redisURL)
        } catch {
            throw ValidationError("--redis-url: \(error.message)")
        }
        let redactor = SecretRedactor(connectionString: databaseURL).adding([redis.password].compactMap { $0 })
        return Resolved(databaseURL: databaseURL, redis: redis, redactor: redactor)
    }

    /// The database URL from the flag or `DATABASE_URL`, checked by libpq.
    static func databaseURL(_ flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        guard let url = flag ?? environment["DATABASE_URL"], !url.isEmpty else {
            throw ValidationError("--database-url is missing (or set DATABASE_URL)")
        }
        do {
            try PostgresConnection.validate(connectionString: url)
        } catch {
            throw ValidationError("--database-url: \(error.message)")
        }
        return url
    }
}
