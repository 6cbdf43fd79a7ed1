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

    @Test func aNewerTokenFencesOffTheOlderHolder() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = FencedPush.Keys(lease: LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named("f")), cluster: "1", namespace: nil)
        let old = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)
        let new = try FencedRedis(endpoint: outbox.redisEndpoint, timeout: 5)

        #expect(try old.claim(keys, xid: 100) == .granted(fence: "0:100", alreadyPushed: []))
        #expect(try old.push(plan([1, 2]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:100") == .pushed)
        // The old holder dies before marking 1 and 2; the new one learns they are in Redis.
        #expect(try new.claim(keys, xid: 105) == .granted(fence: "0:105", alreadyPushed: [1, 2]))
        #expect(throws: RelayProblem.self) { try old.push(plan([3]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:100") }
        #expect(try old.claim(keys, xid: 100) == .fenced(newerToken: "0:105"))
        #expect(try new.push(plan([3]), keys: keys, sidekiq: SidekiqKeys(), fence: "0:105") == .pushed)
        #expect(try outbox.queue("f").count == 3, "jobs 1, 2 and 3 once each; the refused push left nothing")
        try new.release(keys, fence: "0:105")
        #expect(try new.claim(keys, xid: 110) == .granted(fence: "0:110", alreadyPushed: []), "release forgets marked rows")
        #expect(try new.claim(keys, xid: 99_999_999_999) == .granted(fence: "0:99999999999", alreadyPushed: []), "tokens compare as numbers")
        #expect(try new.claim(keys, xid: 110) == .fenced(newerToken: "0:99999999999"))
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
}
