import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// Passes over many split keys lease them in groups (``LeaseGroup``): every key keeps the
/// promise of a lease taken alone: every job once, in order, a refused batch pending whole, bad
/// rows dead-lettered, and a key with a backlog drained by leases of its own.
@Suite(.serialized) struct ManySplitKeysTests {
    static func job(_ queue: String, _ n: Int) -> String { DeliveryPromiseTests.job(queue, n) }

    static func groupLines(_ relay: RelayRunner) -> [String] {
        relay.logs.lines.filter { $0.contains("relayed jobs") && $0.contains("outbox.split_keys=") }
    }

    @Test func manyKeysAreRelayedOnceInOrderByTwoInstances() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        // 600 keys of 4 rows, interleaved as an app writes them, and one key with a backlog.
        let keys = 600
        var rows: [(SplitKey, String)] = []
        var expected: [String: [Int]] = [:]
        for n in 0..<(keys * 4) {
            let key = "k\(n % keys)"
            rows.append((.named(key), Self.job(key, n)))
            expected[key, default: []].append(n)
            if n % 2 == 0 {
                let busy = keys * 4 + n
                rows.append((.named("busy"), Self.job("busy", busy)))
                expected["busy", default: []].append(busy)
            }
        }
        try outbox.insert(rows)
        let relays = [RelayRunner(outbox.configuration(batchSize: 500)), RelayRunner(outbox.configuration(batchSize: 500))]
        try waitUntil("all rows marked", seconds: 60) { try outbox.pendingCount() == 0 }
        #expect(relays.contains { !Self.groupLines($0).isEmpty }, "keys were leased in groups")
        for relay in relays { #expect(relay.finish()) }
        #expect(try outbox.set("queues").count == keys + 1)
        for (key, jids) in expected {
            #expect(DeliveryPromiseTests.jids(try outbox.queue(key)) == jids, "queue \(key): every job once, in order")
        }
        #expect(try outbox.redis.send([RedisCommand("DBSIZE")])[0] == .integer(Int64(2 * (keys + 1) + 1)),
            "the queues, the queue set, and one fence and no record per key (each record released)")
    }

    @Test func aRefusedKeyInAGroupKeepsItsBatchPendingAndTheOthersFlow() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        _ = try outbox.redis.send([RedisCommand("SET", "queue:bad", "notalist")])
        var rows: [(SplitKey, String)] = []
        for n in 0..<60 { rows.append((.named("k\(n % 20)"), Self.job(n % 20 == 7 ? (n == 27 ? "bad" : "fine") : "q\(n % 20)", n))) }
        try outbox.insert(rows)
        let relay = RelayRunner(outbox.configuration())
        defer { relay.finish() }
        try waitUntil("the other keys relayed") { try outbox.pendingCount() == 3 }
        try waitUntil("the refused batch retried") { DeliveryPromiseTests.refusals(relay).count >= 2 }
        #expect(try outbox.queue("fine") == [], "nothing of the refused batch is in Redis")
        #expect(!Self.groupLines(relay).isEmpty)

        _ = try outbox.redis.send([RedisCommand("DEL", "queue:bad")])
        try waitUntil("the batch relayed once the key is fixed") { try outbox.pendingCount() == 0 }
        #expect(DeliveryPromiseTests.jids(try outbox.queue("bad")) == [27])
        #expect(DeliveryPromiseTests.jids(try outbox.queue("fine")) == [7, 47])
        for key in (0..<20).filter({ $0 != 7 }) {
            #expect(DeliveryPromiseTests.jids(try outbox.queue("q\(key)")) == [key, key + 20, key + 40])
        }
    }

    @Test func badRowsInAGroupAreDeadLetteredAndTheRestRelayed() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        var rows: [(SplitKey, String)] = []
        for n in 0..<30 { rows.append((.named("k\(n % 10)"), n == 13 ? "not json" : Self.job("q\(n % 10)", n))) }
        let ids = try outbox.insert(rows)
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("all rows handled") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(try outbox.deadLetters().map(\.0) == [ids[13]])
        #expect(DeliveryPromiseTests.jids(try outbox.queue("q3")) == [3, 23])
        #expect(DeliveryPromiseTests.jids(try outbox.queue("q4")) == [4, 14, 24])
    }

    /// A group's fetch is cut where the whole group's payloads reach `--max-batch-bytes`, so a
    /// group holds no more than one batch's bytes; the keys past the cut come in later rounds.
    @Test func aGroupHoldsNoMoreThanOneBatchOfBytes() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        var rows: [(SplitKey, String)] = []
        for n in 0..<90 { rows.append((.named("k\(n % 30)"), Self.job("q\(n % 30)", n))) }
        try outbox.insert(rows)
        var configuration = outbox.configuration()
        configuration.maxBatchBytes = 1024
        let relay = RelayRunner(configuration)
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        for key in 0..<30 {
            #expect(DeliveryPromiseTests.jids(try outbox.queue("q\(key)")) == [key, key + 30, key + 60])
        }
        let grouped = Self.groupLines(relay).compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("outbox.jobs=") }.flatMap { Int($0.dropFirst("outbox.jobs=".count)) }
        }
        #expect(!grouped.isEmpty && grouped.allSatisfy { $0 <= 1024 / 60 + 1 }, "each group relayed at most about 1 KB of jobs: \(grouped)")
    }

    /// The fence and record keys of `key`'s lease, as the relay names them for this outbox.
    static func fenceKeys(_ outbox: TestOutbox, _ key: SplitKey) throws -> FencedPush.Keys {
        let resolved = try outbox.postgres.query(outbox.queries.resolveTable)
        let identity = try outbox.postgres.query(OutboxQueries.clusterIdentity)
        let lease = LeaseKey(table: "\(resolved.text(0, 0)!).\(resolved.text(0, 1)!)", format: "sidekiq5", splitKey: key)
        return FencedPush.Keys(
            lease: lease, cluster: FencedPush.scope(system: identity.text(0, 0)!, database: identity.text(0, 1)!), namespace: nil)
    }

    /// Found by an adversarial tester: keys past a group's byte cut got no rows and were taken as
    /// drained, so the rows an earlier holder had pushed (and recorded) left the record while
    /// still pending, and were pushed again. Keys past the cut now keep their record.
    @Test func keysPastAGroupsByteCutKeepWhatAnEarlierHolderPushed() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = (0..<10).map { SplitKey.named("k\($0)") }
        var rows: [(SplitKey, String)] = []
        for n in 0..<20 { rows.append((keys[n / 2], Self.job("q", n))) }
        let ids = try outbox.insert(rows)
        // As after a relay died between push and mark: every job in Redis, every row recorded.
        for (index, key) in keys.enumerated() {
            let fence = try Self.fenceKeys(outbox, key)
            _ = try outbox.redis.send([
                RedisCommand("SET", fence.fence, "0:1"), RedisCommand("SET", fence.record, "0:1:\(ids[2 * index]),\(ids[2 * index + 1])"),
                RedisCommand("LPUSH", "queue:q", rows[2 * index].1, rows[2 * index + 1].1),
            ])
        }
        var configuration = outbox.configuration()
        configuration.maxBatchBytes = 1024
        let relay = RelayRunner(configuration)
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        let jids = DeliveryPromiseTests.jids(try outbox.queue("q"))
        #expect(jids.count == 20 && Set(jids).count == 20, "each job once, none pushed again: \(jids.sorted())")
        #expect(relay.logs.lines.contains { $0.contains("an earlier holder pushed rows it did not mark") })
    }

    /// Found by an adversarial tester: one key's fence key of the wrong type refused the whole
    /// group's claim, and every key stopped. Now that key waits, as one whose batch Redis
    /// refused, and the others flow.
    /// The same for a fence key holding a string that is not a fence (found by the re-check).
    @Test(arguments: [["RPUSH", "oops"], ["SET", "garbage"]]) func aWrongTypedFenceKeyHoldsBackOnlyItsKey(_ spoil: [String]) throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let fence = try Self.fenceKeys(outbox, .named("k5"))
        _ = try outbox.redis.send([RedisCommand(spoil[0], fence.fence, spoil[1])])
        try outbox.insert((0..<60).map { (.named("k\($0 % 20)"), Self.job("q\($0 % 20)", $0)) })
        let relay = RelayRunner(outbox.configuration())
        defer { relay.finish() }
        try waitUntil("the other keys relayed") { try outbox.pendingCount() == 3 }
        try waitUntil("the refusal reported") {
            DeliveryPromiseTests.refusals(relay).contains { $0.contains("holds a list, not a string") || $0.contains("holds 'garbage', which is not a fence") }
        }
        _ = try outbox.redis.send([RedisCommand("DEL", fence.fence)])
        try waitUntil("k5 relayed once its fence key is fixed") { try outbox.pendingCount() == 0 }
        #expect(DeliveryPromiseTests.jids(try outbox.queue("q5")) == [5, 25, 45])
    }

    /// Found by an adversarial tester: a key named twice in --split-keys was leased twice in one
    /// group (advisory locks are re-entrant) and pushed twice.
    @Test func aKeyNamedTwiceIsRelayedOnce() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        try outbox.insert((0..<100).map { (.named("k\($0 % 10)"), Self.job("q\($0 % 10)", $0)) })
        let names = ["k0", "k0"] + (1..<10).map { "k\($0)" } + ["k1"]
        let relay = RelayRunner(outbox.configuration(splitKeys: SplitKeyList.parse(names.joined(separator: ","))))
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        #expect(DeliveryPromiseTests.jids(try outbox.queue("q1")) == Array(stride(from: 1, to: 100, by: 10)))
        #expect(DeliveryPromiseTests.jids(try outbox.queue("q0")) == Array(stride(from: 0, to: 100, by: 10)))
    }

    /// A group passes its keys to PostgreSQL as one array literal: keys that need quoting there
    /// (quotes, backslashes, braces, commas, spaces, the word NULL, an empty name) still find
    /// their own rows, each job once and in order.
    @Test func keysThatNeedQuotingInAnArrayAreRelayedInAGroup() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let names = [#"a"b"#, #"c\d"#, "{e,f}", "NULL", " g ", "ü", "h,i", "'j'", "k}", #"""#, #"\"#, "", "x y", #"\""#]
        var rows: [(SplitKey, String)] = []
        for n in 0..<(names.count * 3) { rows.append((.named(names[n % names.count]), Self.job("q\(n % names.count)", n))) }
        try outbox.insert(rows)
        let relay = RelayRunner(outbox.configuration())
        try waitUntil("all rows marked") { try outbox.pendingCount() == 0 }
        #expect(relay.finish())
        for key in names.indices {
            #expect(
                DeliveryPromiseTests.jids(try outbox.queue("q\(key)")) == [key, key + names.count, key + 2 * names.count], "key '\(names[key])'")
        }
        #expect(!Self.groupLines(relay).isEmpty, "the keys were leased in a group")
    }
}
