import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

@testable import OutboxRelayDaemon

/// The fencing scripts in a real Redis: a newer lease holder refuses an older one's pushes, and
/// sees what the older one pushed without marking.
@Suite struct FencingTests {
    func plan(_ ids: [Int64]) -> BatchPlan {
        let rows = ids.map { OutboxRow(id: $0, payload: Array(#"{"class":"J","queue":"f","jid":"\#($0)"}"#.utf8), createdAtMicros: 1_000_000) }
        return BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
    }

    /// The record's entries for rows of ``plan(_:)``: each id with its row's created_at.
    static func stamped(_ ids: [Int64]) -> RecordedRows {
        RecordedRows(Dictionary(uniqueKeysWithValues: ids.map { ($0, Int64(1_000_000)) }))
    }

    @Test func aNewerTokenFencesOffTheOlderHolder() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named("f")), cluster: "1", namespace: nil)
        let old = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        let new = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)

        #expect(try old.claim(keys, xid: 100) == .granted(fence: "0:100", alreadyPushed: []))
        #expect(try old.push(plan([1, 2]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:100") == .pushed)
        // The old holder dies before marking 1 and 2; the new one learns they are in Redis.
        #expect(try new.claim(keys, xid: 105) == .granted(fence: "0:105", alreadyPushed: Self.stamped([1, 2])))
        #expect(throws: RelayProblem.self) { try old.push(plan([3]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:100") }
        #expect(try old.claim(keys, xid: 100) == .fenced(newerToken: "0:105"))
        #expect(try new.push(plan([3]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:105") == .pushed)
        #expect(try outbox.queue("f").count == 3, "jobs 1, 2 and 3 once each; the refused push left nothing")
        try new.release(keys, fence: "0:105")
        #expect(try new.claim(keys, xid: 110) == .granted(fence: "0:110", alreadyPushed: []), "release forgets marked rows")
        #expect(try new.claim(keys, xid: 99_999_999_999) == .granted(fence: "0:99999999999", alreadyPushed: []), "tokens compare as numbers")
        #expect(try new.claim(keys, xid: 110) == .fenced(newerToken: "0:99999999999"))
    }

    /// A page's pushes in one pipeline, in a real Redis, by script and by transaction: each later
    /// one appends its rows only if the one before it landed; after a refusal nothing later lands,
    /// not even a push to a queue that is fine, and the record names only the rows Redis has.
    @Test(arguments: [Int.max, 0]) func aPipelinedPushRunsOnlyAfterTheOneBeforeIt(transactionAbove: Int) throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "x", format: "sidekiq5", splitKey: .named("p")), cluster: "1", namespace: nil)
        let redis = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        let other = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        func plan(_ ids: [Int64], queue: String) -> BatchPlan {
            let rows = ids.map { OutboxRow(id: $0, payload: Array(#"{"class":"J","queue":"\#(queue)","jid":"\#($0)"}"#.utf8), createdAtMicros: 1_000_000) }
            return BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        }
        func send(_ pushes: [(BatchPlan, RecordWrite)], fence: String) throws -> [LeaseMachine.Push] {
            _ = try redis.sendPushes(pushes.map { ($0.0, keys, fence, $0.1) }, sidekiq: SidekiqKeys(), transactionAbove: transactionAbove)
            return try redis.receivePushes()
        }
        #expect(try redis.claim(keys, xid: 1) == .granted(fence: "0:1", alreadyPushed: []))
        let landed = try send([
            (plan([1, 2], queue: "a"), .replace(earlier: Self.stamped([9]), pushed: Self.stamped([1, 2]))),
            (plan([3], queue: "b"), .append(pushed: Self.stamped([3]), after: Self.stamped([1, 2]))),
        ], fence: "0:1")
        #expect(landed == [.pushed, .pushed])
        #expect(try other.claim(keys, xid: 2) == .granted(fence: "0:2", alreadyPushed: Self.stamped([1, 2, 3, 9])), "the appended record names all")
        #expect(try outbox.redis.send([RedisCommand("EXISTS", keys.staged)])[0] == .integer(0), "no staged record is left")

        // queue:c holds a string: its push is refused, and the next one, to a fine queue, too.
        _ = try outbox.redis.send([RedisCommand("SET", "queue:c", "not a list")])
        #expect(try redis.claim(keys, xid: 3) == .granted(fence: "0:3", alreadyPushed: Self.stamped([1, 2, 3, 9])))
        let refused = try send([
            (plan([4], queue: "c"), .replace(earlier: [], pushed: Self.stamped([4]))),
            (plan([5], queue: "b"), .append(pushed: Self.stamped([5]), after: Self.stamped([4]))),
        ], fence: "0:3")
        guard case .refused(let why) = refused[0], case .refused(let after) = refused[1] else {
            Issue.record("expected two refusals, got \(refused)")
            return
        }
        #expect(why.contains("queue:c"))
        #expect(after.contains("no longer ends with the rows of the push sent before this one"))
        #expect(try outbox.queue("b").count == 1, "only job 3; job 5 never landed")
        #expect(try other.claim(keys, xid: 4) == .granted(fence: "0:4", alreadyPushed: Self.stamped([1, 2, 3, 9])), "the record is untouched")
        #expect(try outbox.redis.send([RedisCommand("EXISTS", keys.staged)])[0] == .integer(0), "a refusal leaves no staged record")
    }

    @Test func pushesLargeBatchesInChunks() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "x", format: "sidekiq5", splitKey: .named("big")), cluster: "1", namespace: nil)
        let redis = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        _ = try redis.claim(keys, xid: 1)
        var rows = (1...2500).map { OutboxRow(id: Int64($0), payload: Array(#"{"class":"J","queue":"f","jid":"\#($0)"}"#.utf8), createdAtMicros: 1_000_000) }
        rows += (2501...4700).map { OutboxRow(id: Int64($0), payload: Array(#"{"class":"J","queue":"f","jid":"\#($0)","at":9e9}"#.utf8), createdAtMicros: 1_000_000) }
        let big = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(try redis.push(big, keys: keys, sidekiq: SidekiqKeys(), fence: "0:1") == .pushed)
        let jids = try outbox.queue("f").map { String($0.split(separator: "\"")[11]) }
        #expect(jids == (1...2500).map(String.init), "LPUSH chunks keep row order")
        #expect(try outbox.redis.send([RedisCommand("ZCARD", "schedule")])[0] == .integer(2200))
    }

    /// After a restore or a lagging standby's promotion the fence is ahead of every new token;
    /// exactly one of the holders that saw that fence starts the next epoch.
    @Test func aRewoundFenceStartsTheNextEpochOnce() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "x", format: "sidekiq5", splitKey: .named("r")), cluster: "1:5", namespace: nil)
        let redis = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        #expect(try redis.claim(keys, xid: 9_000) == .granted(fence: "0:9000", alreadyPushed: []))
        #expect(try redis.push(plan([1]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:9000") == .pushed)
        // The database is restored: new leases get older transaction ids.
        #expect(try redis.claim(keys, xid: 700) == .fenced(newerToken: "0:9000"))
        #expect(try redis.claim(keys, xid: 700, rewound: "0:9000") == .granted(fence: "1:700", alreadyPushed: []), "the record is forgotten")
        #expect(try redis.push(plan([3]), keys: keys, sidekiq: SidekiqKeys(), fence: "1:700") == .pushed)
        // A second holder that saw the same old fence does not start yet another epoch.
        #expect(try redis.claim(keys, xid: 690, rewound: "0:9000") == .fenced(newerToken: "1:700"))
        #expect(try redis.claim(keys, xid: 710, rewound: "0:9000") == .granted(fence: "1:710", alreadyPushed: Self.stamped([3])))
        #expect(throws: RelayProblem.self, "the holder from before the restore is fenced off") {
            try redis.push(plan([2]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:9000")
        }
        #expect(try redis.claim(keys, xid: 9_500) == .granted(fence: "1:9500", alreadyPushed: Self.stamped([3])), "epochs outrank transaction ids")
        _ = try outbox.redis.send([RedisCommand("SET", keys.fence, "12")])
        #expect(try redis.claim(keys, xid: 11) == .fenced(newerToken: "12"), "a fence from before epochs is epoch 0")
        #expect(try redis.claim(keys, xid: 13) == .granted(fence: "0:13", alreadyPushed: Self.stamped([3])))
    }

    /// Redis keeps the writes a script made before a command failed, so the push checks every key
    /// before its first write: a refused push leaves nothing, and records nothing as pushed.
    @Test func aPushRedisWouldRefuseWritesNothing() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "x", format: "sidekiq5", splitKey: .named("w")), cluster: "1:5", namespace: nil)
        let redis = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        _ = try redis.claim(keys, xid: 1)
        let rows = [
            OutboxRow(id: 1, payload: Array(#"{"class":"J","queue":"a","jid":"1"}"#.utf8), createdAtMicros: 1_000_000),
            OutboxRow(id: 2, payload: Array(#"{"class":"J","queue":"z","jid":"2"}"#.utf8), createdAtMicros: 1_000_000),
            OutboxRow(id: 3, payload: Array(#"{"class":"J","queue":"a","jid":"3","at":9e9}"#.utf8), createdAtMicros: 1_000_000),
        ]
        let batch = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        for (key, value) in [("queue:z", "x"), ("queues", "x"), ("schedule", "x")] {
            _ = try outbox.redis.send([RedisCommand("SET", key, value)])
            guard case .refused(let reason) = try redis.push(batch, keys: keys, sidekiq: SidekiqKeys(), fence: "0:1") else {
                Issue.record("a wrong-typed \(key) was not refused")
                continue
            }
            #expect(reason.contains("'\(key)' holds a string"), "\(reason)")
            _ = try outbox.redis.send([RedisCommand("DEL", key)])
            #expect(try outbox.redis.send([RedisCommand("DBSIZE")])[0] == .integer(1), "only the fence exists: nothing pushed or recorded")
        }
        _ = try outbox.redis.send([RedisCommand("RPUSH", keys.record, "x")])
        let claim = try redis.claim(keys, xid: 2)
        guard case .refused(let reason) = claim else {
            Issue.record("a claim must refuse a wrong-typed record before writing: \(claim)")
            return
        }
        #expect(reason.contains("holds a list, not a string"), "\(reason)")
        #expect(try outbox.redis.send([RedisCommand("GET", keys.fence)])[0] == .bulk(Array("0:1".utf8)))
    }
}
