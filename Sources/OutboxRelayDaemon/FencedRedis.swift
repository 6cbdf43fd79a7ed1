import OutboxRelay
import OutboxRelayIO

/// A Redis connection with the relay's scripts (``FencedPush``) loaded, speaking in leases:
/// claim a lease's fence, push a batch under it, release it.
///
/// With `waitReplicas` above 0, every claim and push is followed, in the same pipeline, by `WAIT`:
/// a claim or push fewer replicas acknowledged answers `.unconfirmed`, and the lease machine acts
/// on neither. With `requireMaster` (Sentinel), the server must say `ROLE` master.
final class FencedRedis {
    let connection: RedisConnection
    /// Where this connection went (with Sentinel, the master they named).
    let endpoint: RedisEndpoint
    private let claimSHA: String
    private let releaseSHA: String
    private let smallPushSHA: String
    private let claimGroupSHA: String
    private let releaseGroupSHA: String
    private let wait: RedisCommand?
    private let waitReplicas: Int
    private let requireMaster: Bool
    /// For each ``sendPushes(_:sidekiq:transactionAbove:)`` whose replies are not read yet,
    /// oldest first: the number of replies of each push transaction.
    private var pushesInFlight: [[Int]] = []

    init(
        endpoint: RedisEndpoint, timeout: Double, tls: RedisTLS = RedisTLS(), replication: RedisReplication = RedisReplication(),
        requireMaster: Bool = false
    ) throws {
        self.endpoint = endpoint
        connection = try RedisConnection(endpoint: endpoint, timeout: timeout, tls: tls)
        self.requireMaster = requireMaster
        waitReplicas = replication.waitReplicas
        wait = replication.waitReplicas > 0
            ? RedisCommand("WAIT", String(replication.waitReplicas), String(max(1, Int(replication.waitTimeout * 1000)))) : nil
        let scripts = [
            FencedPush.claimScript, FencedPush.releaseScript, FencedPush.claimGroupScript, FencedPush.releaseGroupScript,
            FencedPush.smallPushScript,
        ]
        let replies = try connection.send(scripts.map { RedisCommand("SCRIPT", "LOAD", $0) })
        let shas = replies.compactMap(\.text)
        guard shas.count == scripts.count, replies.allSatisfy({ if case .bulk = $0 { true } else { false } }) else {
            throw RedisError(.connectionFailed, "Redis refused to load the relay's scripts: \(replies)")
        }
        (claimSHA, releaseSHA, claimGroupSHA, releaseGroupSHA, smallPushSHA) = (shas[0], shas[1], shas[2], shas[3], shas[4])
        if requireMaster { try checkRole() }
    }

    /// Broken, or left with replies nobody will read (a lease abandoned with a push in flight):
    /// either way the next pass opens a new connection.
    var isBroken: Bool { connection.isBroken || connection.unreadReplies > 0 }

    /// Connects to `endpoint`, or with Sentinel to the master the Sentinels name (`endpoint`'s
    /// host is then the master's name).
    static func open(
        _ endpoint: RedisEndpoint, timeout: Double, tls: RedisTLS, replication: RedisReplication, sentinel: RedisSentinel?
    ) throws -> FencedRedis {
        let master = try sentinel?.master(of: endpoint, timeout: timeout, tlsSettings: tls) ?? endpoint
        return try FencedRedis(endpoint: master, timeout: timeout, tls: tls, replication: replication, requireMaster: sentinel != nil)
    }

    /// The Sentinel locator of `replication`, or nil without Sentinel; `tls`: talk TLS to them.
    static func sentinel(_ replication: RedisReplication, tls: Bool) -> RedisSentinel? {
        guard !replication.sentinels.isEmpty else { return nil }
        return RedisSentinel(sentinels: replication.sentinels, password: replication.sentinelPassword, tls: tls)
    }

    /// Claims the fence for the lease taken by transaction `xid`; `rewound`: the fence this holder
    /// proved ahead of PostgreSQL's transaction ids, to start the next epoch from.
    func claim(_ keys: FencedPush.Keys, xid: Int64, rewound: String? = nil) throws -> LeaseMachine.Claim {
        let replies = try connection.send([FencedPush.claim(sha: claimSHA, keys: keys, xid: xid, rewound: rewound)] + (wait.map { [$0] } ?? []))
        let claim = try answer { () throws(FencedPush.Refusal) in try FencedPush.claimAnswer(replies[0]) }
        if case .granted = claim, let why = unconfirmed(replies) { return .unconfirmed("the claim: \(why)") }
        return claim
    }

    /// Pushes the plan's jobs under `fence`, writing `record` (by default the plan's rows) as the
    /// record; throws ``RelayProblem/fenced`` when another holder's newer token has been seen.
    func push(_ plan: BatchPlan, keys: FencedPush.Keys, sidekiq: SidekiqKeys, fence: String, record: RecordWrite? = nil) throws -> LeaseMachine.Push {
        // One path for one batch and for a group's: send, read the replies, answer.
        _ = try sendPushes([(plan, keys, fence, record ?? .whole(plan.pushedRows))], sidekiq: sidekiq)
        return try receivePushes()[0]
    }

    // A group's calls are sent without waiting (``sendClaims(_:)``, ``sendPushes(_:sidekiq:transactionAbove:)``,
    // ``sendReleases(_:)``, each returning how many replies to read), and their replies, read
    // later with ``receive(_:)``, are answered by ``claims(_:)``, ``pushes(_:)`` and ``releases(_:)``.

    /// Sends the claims of a group's leases, which share the xid of the statement that took their
    /// locks, as one script call (``FencedPush/claimGroupScript``), then one `WAIT`.
    func sendClaims(_ leases: [(keys: FencedPush.Keys, xid: Int64, rewound: String?)]) throws -> Int {
        guard let xid = leases.first?.xid, leases.allSatisfy({ $0.xid == xid }) else {
            throw RelayProblem.unexpectedReply("the group's claims", "leases of one group with different transaction ids")
        }
        return try sendWithoutWaiting([FencedPush.claimGroup(sha: claimGroupSHA, leases: leases.map { ($0.keys, $0.rewound) }, xid: xid)])
    }

    /// Each lease's claim, from the replies of ``sendClaims(_:)``.
    func claims(_ replies: [RedisReply], count: Int) throws -> [LeaseMachine.Claim] {
        guard let answers = FencedPush.claimGroupAnswers(replies[0], count: count) else {
            _ = try answer { () throws(FencedPush.Refusal) in try FencedPush.claimAnswer(replies[0]) }
            throw RelayProblem.unexpectedReply("the group's claim script", "\(replies[0])")
        }
        let why = unconfirmed(all: replies, scripts: 1)
        return try answers.map { reply in
            let claim = try answer { () throws(FencedPush.Refusal) in try FencedPush.claimAnswer(reply) }
            if case .granted = claim, let why { return .unconfirmed("the claim: \(why)") }
            return claim
        }
    }

    /// Sends batches (a group's, or a page's chunks) as one pipeline of push transactions (one
    /// `WAIT` after all of them).
    /// `transactionAbove`: see ``FencedPush/push(keys:sidekiq:fence:plan:record:smallSHA:transactionAbove:)``.
    func sendPushes(
        _ batches: [(plan: BatchPlan, keys: FencedPush.Keys, fence: String, record: RecordWrite)], sidekiq: SidekiqKeys,
        transactionAbove: Int = FencedPush.transactionThreshold
    ) throws -> Int {
        let transactions = batches.map {
            FencedPush.push(
                keys: $0.keys, sidekiq: sidekiq, fence: $0.fence, plan: $0.plan, record: $0.record, smallSHA: smallPushSHA,
                transactionAbove: transactionAbove)
        }
        let count = try sendWithoutWaiting(transactions.flatMap { $0 })
        pushesInFlight.append(transactions.map(\.count))
        return count
    }

    /// Reads the replies of the oldest ``sendPushes(_:sidekiq:transactionAbove:)`` not answered
    /// yet, and answers each of its batches (see ``pushes(_:count:)``).
    func receivePushes() throws -> [LeaseMachine.Push] {
        guard let sizes = pushesInFlight.first else { throw RelayProblem.unexpectedReply("the push transactions", "no push in flight") }
        return try pushes(try receive(sizes.reduce(0, +) + (wait == nil ? 0 : 1)), count: sizes.count)
    }

    /// Each batch's push, from the replies of the oldest ``sendPushes(_:sidekiq:transactionAbove:)``
    /// not answered yet; a fenced push throws as ``push(_:keys:sidekiq:fence:record:)`` does.
    func pushes(_ replies: [RedisReply], count: Int) throws -> [LeaseMachine.Push] {
        let sizes = pushesInFlight.first ?? []
        let pushReplies = sizes.reduce(0, +)
        guard !sizes.isEmpty, sizes.count == count, replies.count >= pushReplies else {
            throw RelayProblem.unexpectedReply("the push transactions", "\(replies.count) replies for \(count) pushes")
        }
        pushesInFlight.removeFirst()
        let why = wait == nil || replies.count <= pushReplies ? nil : unconfirmed(wait: replies[pushReplies])
        var start = 0
        return try sizes.map { size in
            defer { start += size }
            let push = try answer { () throws(FencedPush.Refusal) in try FencedPush.pushAnswer(replies: replies[start..<(start + size)]) }
            if push == .pushed, let why { return .unconfirmed("the push: \(why)") }
            return push
        }
    }

    /// Sends the releases of a group's leases as one script call (``FencedPush/releaseGroupScript``).
    func sendReleases(_ leases: [(keys: FencedPush.Keys, fence: String, remaining: RecordedRows)]) throws -> Int {
        try connection.sendWithoutWaiting([FencedPush.releaseGroup(sha: releaseGroupSHA, leases: leases)])
        return 1
    }

    /// Checks the reply of ``sendReleases(_:)``.
    func releases(_ replies: [RedisReply]) throws {
        try answer { () throws(FencedPush.Refusal) in try FencedPush.releaseAnswer(replies[0]) }
    }

    /// Reads `count` replies of calls sent without waiting.
    func receive(_ count: Int) throws -> [RedisReply] {
        try connection.receive(count)
    }

    /// Sends `scripts` followed by `WAIT` when replicas must acknowledge; returns the replies to read.
    private func sendWithoutWaiting(_ scripts: [RedisCommand]) throws -> Int {
        let commands = scripts + (wait.map { [$0] } ?? [])
        try connection.sendWithoutWaiting(commands)
        return commands.count
    }

    /// Why the `WAIT` after `scripts` pipelined scripts does not confirm them, or nil.
    private func unconfirmed(all replies: [RedisReply], scripts: Int) -> String? {
        guard wait != nil, scripts > 0, replies.count == scripts + 1 else { return nil }
        return unconfirmed([replies[0], replies[scripts]])
    }

    /// Why the `WAIT` that followed a script does not confirm it, or nil when it does (or none ran).
    private func unconfirmed(_ replies: [RedisReply]) -> String? {
        guard wait != nil, replies.count == 2 else { return nil }
        return unconfirmed(wait: replies[1])
    }

    /// Why this reply of `WAIT` does not confirm what went before it, or nil when it does.
    private func unconfirmed(wait reply: RedisReply) -> String? {
        guard case .integer(let acknowledged) = reply else { return "WAIT failed: \(reply)" }
        if acknowledged >= waitReplicas { return nil }
        return "\(acknowledged) of \(waitReplicas) replicas acknowledged it in time (--redis-wait-replicas)"
    }

    /// Checks that Redis still answers (an idle relay would otherwise not notice until a push),
    /// and with Sentinel that it is still the master.
    func ping() throws {
        if requireMaster { return try checkRole() }
        if case .error(let message) = try connection.send([RedisCommand("PING")])[0] {
            throw RedisError(.commandFailed, "Redis at \(endpoint) refused PING: \(message)")
        }
    }

    /// Throws unless `ROLE` says master, so the loop drops the connection and asks the Sentinels.
    private func checkRole() throws {
        let role = try connection.send([RedisCommand("ROLE")])[0]
        guard case .array(let parts) = role, parts.first?.text == "master" else {
            let named = if case .array(let parts) = role, let first = parts.first?.text { first } else { "\(role)" }
            throw RedisError(.connectionLost, "Redis at \(endpoint) is not the master (ROLE says \(named)); asking the Sentinels again")
        }
    }

    /// Ends the lease in Redis, leaving in the record only `remaining`, the rows still unmarked.
    func release(_ keys: FencedPush.Keys, fence: String, remaining: RecordedRows = []) throws {
        let reply = try connection.send([FencedPush.release(sha: releaseSHA, keys: keys, fence: fence, remaining: remaining)])[0]
        try answer { () throws(FencedPush.Refusal) in try FencedPush.releaseAnswer(reply) }
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
