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
        let reply = try call(FencedPush.claim(sha: claimSHA, keys: keys, xid: xid, rewound: rewound))
        guard case .array(let parts) = reply, parts.count >= 2 else { throw RelayProblem.unexpectedReply("claim", reply) }
        if let refusal = Self.refusal(parts) { throw RelayProblem.redisRefused(refusal) }
        if parts[0] == .integer(1), parts.count == 3, let fence = parts[2].text {
            return .granted(fence: fence, alreadyPushed: FencedPush.pushedIDs(inRecord: parts[1].text ?? ""))
        }
        return .fenced(newerToken: parts[1].text ?? "?")
    }

    /// Pushes the plan's jobs under `fence`, recording `record` as pushed (by default the plan's
    /// rows); throws ``RelayProblem/fenced`` when another holder's newer token has been seen.
    func push(_ plan: BatchPlan, keys: FencedPush.Keys, sidekiq: SidekiqKeys, fence: String, record: [Int64]? = nil) throws -> LeaseMachine.Push {
        let command = FencedPush.push(sha: pushSHA, keys: keys, sidekiq: sidekiq, fence: fence, plan: plan, record: record ?? plan.pushedIDs)
        let reply = try call(command)
        if case .array(let parts) = reply, let refusal = Self.refusal(parts) { return .refused(refusal) }
        guard case .integer = reply else { throw RelayProblem.unexpectedReply("push", reply) }
        return .pushed
    }

    /// Checks that Redis still answers (an idle relay would otherwise not notice until a push).
    func ping() throws {
        _ = try call(RedisCommand("PING"))
    }

    /// Ends the lease in Redis, leaving in the record only `remaining`, the rows still unmarked.
    func release(_ keys: FencedPush.Keys, fence: String, remaining: [Int64] = []) throws {
        _ = try call(FencedPush.release(sha: releaseSHA, keys: keys, fence: fence, remaining: remaining))
    }

    /// `{-1, key, type, wanted}`: a script found a key it would write holding the wrong type.
    private static func refusal(_ parts: [RedisReply]) -> String? {
        guard parts.count == 4, parts[0] == .integer(-1) else { return nil }
        let key = parts[1].text ?? "?"
        let found = parts[2].text ?? "?"
        let wanted = parts[3].text ?? "?"
        if found.hasPrefix("score ") {
            return "the schedule key '\(key)' cannot take the \(found): not \(wanted)"
        }
        return "Redis key '\(key)' holds a \(found), not a \(wanted) (WRONGTYPE); fix or delete that key"
    }

    private func call(_ command: RedisCommand) throws -> RedisReply {
        let reply = try connection.send([command])[0]
        if case .error(let message) = reply {
            if message.hasPrefix("FENCED") { throw RelayProblem.fenced(message) }
            throw RedisError(.commandFailed, "Redis refused the relay's script: \(message)")
        }
        return reply
    }
}
