import ArgumentParser
import Foundation
import OutboxRelay

/// `run`'s flags for a highly available Redis: Sentinel, and replica-acknowledged pushes.
struct RedisReplicationOptions: ParsableArguments {
    static let environmentFlags = ["redis-sentinels", "redis-sentinel-password-file", "redis-wait-replicas", "redis-wait-timeout"]

    @Option(help: ArgumentHelp("Sentinels to ask for the master, comma-separated; --redis-url's host is then the master's name.", valueName: "host:port,…"))
    var redisSentinels: String?

    @Option(help: ArgumentHelp("Read the Sentinels' password from this file.", valueName: "path"))
    var redisSentinelPasswordFile: String?

    @Option(help: ArgumentHelp("Replicas that must acknowledge each push (WAIT) before its rows are marked; 0: none.", valueName: "N"))
    var redisWaitReplicas: Int = 0

    @Option(help: ArgumentHelp("Seconds WAIT may take before a push counts as unconfirmed.", valueName: "seconds"))
    var redisWaitTimeout: Double = 1

    func validate() throws {
        _ = try resolved(redis: nil)
    }

    /// The settings, checked; `redis`: the parsed `--redis-url`, which Sentinel needs as `redis://[user:password@]MASTERNAME/db`.
    func resolved(redis: RedisEndpoint?) throws -> RedisReplication {
        guard (0...100).contains(redisWaitReplicas) else {
            throw ValidationError("--redis-wait-replicas must be from 0 to 100, got \(redisWaitReplicas)")
        }
        guard redisWaitTimeout >= 0.01, redisWaitTimeout <= 600 else {
            throw ValidationError("--redis-wait-timeout must be from 0.01 to 600 seconds, got \(redisWaitTimeout)")
        }
        var replication = RedisReplication(waitReplicas: redisWaitReplicas, waitTimeout: redisWaitTimeout)
        if let redisSentinels {
            do {
                replication.sentinels = try RedisReplication.parseSentinels(redisSentinels)
            } catch {
                throw ValidationError("--redis-sentinels: \(error.message)")
            }
            if let redis, case .unix = redis.address {
                throw ValidationError("--redis-sentinels: --redis-url must name the master as redis://[user:password@]MASTERNAME/db, not a unix socket")
            }
        } else if redisSentinelPasswordFile != nil {
            throw ValidationError("--redis-sentinel-password-file needs --redis-sentinels")
        }
        if let redisSentinelPasswordFile {
            replication.sentinelPassword = try ConnectionOptions.readSecret(redisSentinelPasswordFile, flag: "--redis-sentinel-password-file")
        }
        return replication
    }
}
