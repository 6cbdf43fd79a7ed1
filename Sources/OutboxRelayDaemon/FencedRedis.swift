import OutboxRelay
import OutboxRelayIO

/// A Redis connection with the relay's scripts (``FencedPush``) loaded, speaking in leases:
/// claim a lease's fence, push a batch under it, release it.
final class FencedRedis {
    let connection: RedisConnection
    private let claimSHA: String
    private let pushSHA: String
    private let releaseSHA: String

    init(endpoint: RedisEndpoint, timeout: Double, tls: RedisTLS = RedisTLS()) throws {
        connection = try RedisConnection(endpoint: endpoint, timeout: timeout, tls: tls)
        let replies = try connection.send(
            [FencedPush.claimScript, FencedPush.pushScript, FencedPush.releaseScript].map { RedisCommand("SCRIPT", "LOAD", $0) })
        let shas = replies.compactMap(\.text)
        guard shas.count == 3, replies.allSatisfy({ if case .bulk = $0 { true } else { false } }) else {
            throw RedisError(.connectionFailed, "Redis refused to load the relay's scripts: \(replies)")
        }
        (claimSHA, pushSHA, releaseSHA) = (shas[0], shas[1], shas[2])
    }

    var isBroken: Bool { connection.isBroken }

    /// Claims the fence for the lease taken by transaction `xid`; `rewound`: the fence this holder
    /// proved ahead of PostgreSQL's transaction ids, to start the next epoch from.
    func claim(_ keys: FencedPush.Keys, xid: Int64, rewound: String? = nil) throws -> LeaseMachine.Claim {
        let reply = try connection.send([FencedPush.claim(sha: claimSHA, keys: keys, xid: xid, rewound: rewound)])[0]
        return try answer { () throws(FencedPush.Refusal) in try FencedPush.claimAnswer(reply) }
    }

    /// Pushes the plan's jobs under `fence`, recording `record` as pushed (by default the plan's
    /// rows); throws ``RelayProblem/fenced`` when another holder's newer token has been seen.
    func push(_ plan: BatchPlan, keys: FencedPush.Keys, sidekiq: SidekiqKeys, fence: String, record: [Int64]? = nil) throws -> LeaseMachine.Push {
        let command = FencedPush.push(sha: pushSHA, keys: keys, sidekiq: sidekiq, fence: fence, plan: plan, record: record ?? plan.pushedIDs)
        let reply = try connection.send([command])[0]
        return try answer { () throws(FencedPush.Refusal) in try FencedPush.pushAnswer(reply) }
    }

    /// Checks that Redis still answers (an idle relay would otherwise not notice until a push).
    func ping() throws {
        _ = try call(RedisCommand("PING"))
    }

    /// Ends the lease in Redis, leaving in the record only `remaining`, the rows still unmarked.
    func release(_ keys: FencedPush.Keys, fence: String, remaining: [Int64] = []) throws {
        _ = try call(FencedPush.release(sha: releaseSHA, keys: keys, fence: fence, remaining: remaining))
    }

    private func call(_ command: RedisCommand) throws -> RedisReply {
        let reply = try connection.send([command])[0]
        if case .error = reply { _ = try answer { () throws(FencedPush.Refusal) in try FencedPush.pushAnswer(reply) } }
        return reply
    }

    /// Runs `body`, turning a refusal into the error the relay's loop acts on: a fenced lease, a
    /// Redis key of the wrong type, or a Redis failure (which drops the connection).
    private func answer<T>(_ body: () throws(FencedPush.Refusal) -> T) throws -> T {
        do {
            return try body()
        } catch .fenced(let message) {
            throw RelayProblem.fenced(message)
        } catch .wrongType(let reason) {
            throw RelayProblem.redisRefused(reason)
        } catch .failed(let message) {
            throw RedisError(.commandFailed, message)
        }
    }
}
