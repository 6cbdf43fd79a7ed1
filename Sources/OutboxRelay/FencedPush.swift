/// The relay's Redis side of a lease, as Lua scripts that each run atomically in Redis.
///
/// Every lease acquisition in PostgreSQL yields a fencing token that only grows (the transaction
/// id of the statement that took the lock). For each lease key Redis keeps two small keys:
/// - `outbox-relay:fence:<lease>`: the newest token seen;
/// - `outbox-relay:pushed:<lease>`: `<token>:<ids>`, the rows pushed under that lease that may not
///   be marked in PostgreSQL yet (``PushLedger``: at most the batch being pushed, the one whose
///   mark is in flight, and what an earlier holder left).
/// Both expire after ``recordSeconds`` of disuse, and carry the redis-namespace prefix if set.
///
/// - ``claim`` runs first under a new lease: it refuses a token older than one already seen, else
///   records the token, so any push still in flight from an earlier holder is refused from then
///   on, and returns the ids the earlier holder pushed; those rows are marked, not pushed again.
/// - ``push`` refuses to run unless the fence still holds its own token, then records the unmarked
///   ids and pushes the batch's jobs (SADD, LPUSH per queue, ZADD), all or nothing.
/// - ``release`` leaves only the ids still unmarked (usually none) before the lease is given up.
public enum FencedPush {
    public static let recordSeconds = 7 * 24 * 3600

    static let greater = """
        local function newer(a, b) return #a > #b or (#a == #b and a > b) end
        """

    /// KEYS: fence, record. ARGV: token, ttl. Returns `{1, record}` or `{0, newer token}`.
    public static let claimScript = greater + """

        local seen = redis.call('GET', KEYS[1])
        if seen and newer(seen, ARGV[1]) then return {0, seen} end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        local record = redis.call('GET', KEYS[2]) or ''
        return {1, record}
        """

    /// KEYS: fence, record, queues set, schedule, then one list per queue.
    /// ARGV: token, ttl, ids, queue count, per queue (name, job count, jobs…), schedule pair
    /// count, then (score, json) pairs. Returns the number of jobs pushed, or an error when fenced.
    public static let pushScript = """
        local seen = redis.call('GET', KEYS[1])
        if seen ~= ARGV[1] then return redis.error_reply('FENCED lease taken over by token ' .. tostring(seen)) end
        redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[3], 'EX', ARGV[2])
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        local function chunked(command, key, first, last, step)
          local i = first
          while i <= last do
            local j = math.min(last, i + 999 * step + step - 1)
            redis.call(command, key, unpack(ARGV, i, j))
            i = j + 1
          end
        end
        local at = 5
        local queues = tonumber(ARGV[4])
        local pushed = 0
        if queues > 0 then
          local names = {}
          for q = 1, queues do
            names[q] = ARGV[at]
            local count = tonumber(ARGV[at + 1])
            chunked('LPUSH', KEYS[4 + q], at + 2, at + 1 + count, 1)
            pushed = pushed + count
            at = at + 2 + count
          end
          redis.call('SADD', KEYS[3], unpack(names))
        end
        local scheduled = tonumber(ARGV[at])
        if scheduled > 0 then chunked('ZADD', KEYS[4], at + 1, at + 2 * scheduled, 2) end
        return pushed + scheduled
        """

    /// KEYS: fence, record. ARGV: token, ttl, ids. If the fence still holds the token, the record
    /// keeps only `ids`, or goes when there are none.
    public static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          if ARGV[3] == '' then redis.call('DEL', KEYS[2])
          else redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[3], 'EX', ARGV[2]) end
        end
        return 1
        """

    public struct Keys: Sendable, Equatable {
        public let fence: String
        public let record: String

        public init(lease: LeaseKey, cluster: String, namespace: String?) {
            let prefix = namespace.map { "\($0):" } ?? ""
            fence = "\(prefix)outbox-relay:fence:\(cluster):\(lease.value)"
            record = "\(prefix)outbox-relay:pushed:\(cluster):\(lease.value)"
        }
    }

    public static func claim(sha: String, keys: Keys, token: Int64) -> RedisCommand {
        RedisCommand("EVALSHA", sha, "2", keys.fence, keys.record, String(token), String(recordSeconds))
    }

    /// The ids pushed under an earlier lease and perhaps not marked, from the record `claim`
    /// returned (`<token>:<id>,<id>,…`); empty when there is none.
    public static func pushedIDs(inRecord record: String) -> Set<Int64> {
        guard let colon = record.firstIndex(of: ":") else { return [] }
        return Set(record[record.index(after: colon)...].split(separator: ",").compactMap { Int64($0) })
    }

    /// `record`: the ids to record as pushed and perhaps unmarked (``PushLedger/record(pushing:)``).
    public static func push(
        sha: String, keys: Keys, sidekiq: SidekiqKeys, token: Int64, plan: BatchPlan, record: [Int64]
    ) -> RedisCommand {
        var keyList = [keys.fence, keys.record, sidekiq.queues, sidekiq.schedule]
        keyList += plan.queued.map { sidekiq.queue($0.queue) }
        var arguments: [[UInt8]] = ["EVALSHA", sha, String(keyList.count)].map { Array($0.utf8) }
        arguments += keyList.map { Array($0.utf8) }
        arguments.append(Array(String(token).utf8))
        arguments.append(Array(String(recordSeconds).utf8))
        arguments.append(decimalList(record))
        arguments.append(Array(String(plan.queued.count).utf8))
        for queue in plan.queued {
            arguments.append(Array(queue.queue.utf8))
            arguments.append(Array(String(queue.jobs.count).utf8))
            arguments += queue.jobs
        }
        arguments.append(Array(String(plan.scheduled.count).utf8))
        for pair in plan.scheduled {
            arguments.append(Array(pair.score.utf8))
            arguments.append(pair.json)
        }
        return RedisCommand(arguments)
    }

    public static func release(sha: String, keys: Keys, token: Int64, remaining: [Int64]) -> RedisCommand {
        RedisCommand("EVALSHA", sha, "2", keys.fence, keys.record, String(token), String(recordSeconds), idList(remaining))
    }

    static func idList(_ ids: [Int64]) -> String {
        String(decoding: decimalList(ids), as: UTF8.self)
    }

    /// `ids` as comma-separated decimals, written digit by digit (thousands of ids per push).
    static func decimalList(_ ids: [Int64]) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(ids.count * 8)
        var digits = [UInt8](repeating: 0, count: 20)
        for (position, id) in ids.enumerated() {
            if position > 0 { text.append(UInt8(ascii: ",")) }
            if id < 0 { text.append(UInt8(ascii: "-")) }
            var rest = id.magnitude
            var count = 0
            repeat {
                digits[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            for index in stride(from: count - 1, through: 0, by: -1) { text.append(digits[index]) }
        }
        return text
    }
}
