import OutboxRelay
import OutboxRelayIO

/// A Redis connection with the relay's scripts (``FencedPush``) loaded, speaking in leases:
/// claim a lease's fence, push a batch under it, release it.
final class FencedRedis {
    enum Claim: Equatable {
        /// The fence is ours; these rows were pushed under an earlier lease and may be unmarked.
        case granted(alreadyPushed: Set<Int64>)
        /// A newer token has been seen: another instance holds the lease now.
        case fenced(newerToken: String)
    }

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

    func claim(_ keys: FencedPush.Keys, token: Int64) throws -> Claim {
        let reply = try call(FencedPush.claim(sha: claimSHA, keys: keys, token: token))
        guard case .array(let parts) = reply, parts.count == 2 else { throw RelayProblem.unexpectedReply("claim", reply) }
        if parts[0] == .integer(1) {
            return .granted(alreadyPushed: FencedPush.pushedIDs(inRecord: parts[1].text ?? ""))
        }
        return .fenced(newerToken: parts[1].text ?? "?")
    }

    /// Pushes the plan's jobs under `token`, recording `record` as pushed (by default the plan's
    /// rows); throws ``RelayProblem/fenced`` when another holder's newer token has been seen.
    func push(_ plan: BatchPlan, keys: FencedPush.Keys, sidekiq: SidekiqKeys, token: Int64, record: [Int64]? = nil) throws {
        let command = FencedPush.push(sha: pushSHA, keys: keys, sidekiq: sidekiq, token: token, plan: plan, record: record ?? plan.pushedIDs)
        let reply = try call(command)
        guard case .integer = reply else { throw RelayProblem.unexpectedReply("push", reply) }
    }

    /// Checks that Redis still answers (an idle relay would otherwise not notice until a push).
    func ping() throws {
        _ = try call(RedisCommand("PING"))
    }

    /// Ends the lease in Redis, leaving in the record only `remaining`, the rows still unmarked.
    func release(_ keys: FencedPush.Keys, token: Int64, remaining: [Int64] = []) throws {
        _ = try call(FencedPush.release(sha: releaseSHA, keys: keys, token: token, remaining: remaining))
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
