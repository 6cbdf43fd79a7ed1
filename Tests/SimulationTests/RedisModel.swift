import OutboxRelay

/// An in-memory Redis with the semantics the relay depends on: typed values and WRONGTYPE
/// errors, the commands its scripts call, and scripts that run atomically but keep the writes
/// they made before a command failed (``LuaScripts`` runs the relay's real scripts against it).
final class RedisModel {
    enum Value: Equatable {
        case string([UInt8])
        case list([[UInt8]])
        case set(Set<[UInt8]>)
        case zset([[UInt8]: Double])

        var typeName: String {
            switch self {
            case .string: "string"
            case .list: "list"
            case .set: "set"
            case .zset: "zset"
            }
        }
    }

    private(set) var keys: [[UInt8]: Value] = [:]
    /// Every job written into a queue or the schedule, by jid, counted: a job written twice is a
    /// duplicate even if Sidekiq took one copy already.
    private(set) var written: [String: Int] = [:]

    static let wrongType = "WRONGTYPE Operation against a key holding the wrong kind of value"

    /// Runs one command, as `redis.call` inside a script does.
    func command(_ arguments: [[UInt8]]) -> RedisReply {
        guard let first = arguments.first else { return .error("ERR wrong number of arguments") }
        let name = String(decoding: first, as: UTF8.self).uppercased()
        let args = Array(arguments.dropFirst())
        switch name {
        case "GET":
            guard args.count == 1 else { return .error("ERR wrong number of arguments for 'get' command") }
            switch keys[args[0]] {
            case nil: return .null
            case .string(let value): return .bulk(value)
            default: return .error(Self.wrongType)
            }
        case "SET":
            guard args.count >= 2 else { return .error("ERR wrong number of arguments for 'set' command") }
            keys[args[0]] = .string(args[1])
            return .status("OK")
        case "APPEND":
            guard args.count == 2 else { return .error("ERR wrong number of arguments for 'append' command") }
            switch keys[args[0]] {
            case nil: keys[args[0]] = .string(args[1])
            case .string(let value): keys[args[0]] = .string(value + args[1])
            default: return .error(Self.wrongType)
            }
            guard case .string(let value) = keys[args[0]] else { return .error("ERR model") }
            return .integer(Int64(value.count))
        case "GETRANGE":
            guard args.count == 3, let first = Int(String(decoding: args[1], as: UTF8.self)),
                let last = Int(String(decoding: args[2], as: UTF8.self))
            else { return .error("ERR wrong number of arguments for 'getrange' command") }
            let value: [UInt8]
            switch keys[args[0]] {
            case nil: value = []
            case .string(let existing): value = existing
            default: return .error(Self.wrongType)
            }
            // As Redis: negative offsets count from the end, and both are clamped to the string.
            let start = max(0, first < 0 ? value.count + first : first)
            let end = min(value.count - 1, last < 0 ? value.count + last : last)
            return .bulk(start > end ? [] : Array(value[start...end]))
        case "RENAME":
            guard args.count == 2 else { return .error("ERR wrong number of arguments for 'rename' command") }
            guard let value = keys.removeValue(forKey: args[0]) else { return .error("ERR no such key") }
            keys[args[1]] = value
            return .status("OK")
        case "EXPIRE":
            guard args.count == 2 else { return .error("ERR wrong number of arguments for 'expire' command") }
            return .integer(keys[args[0]] == nil ? 0 : 1)
        case "TYPE":
            guard args.count == 1 else { return .error("ERR wrong number of arguments for 'type' command") }
            return .status(keys[args[0]]?.typeName ?? "none")
        case "DEL":
            var removed: Int64 = 0
            for key in args where keys.removeValue(forKey: key) != nil { removed += 1 }
            return .integer(removed)
        case "LPUSH":
            guard args.count >= 2 else { return .error("ERR wrong number of arguments for 'lpush' command") }
            var list: [[UInt8]]
            switch keys[args[0]] {
            case nil: list = []
            case .list(let existing): list = existing
            default: return .error(Self.wrongType)
            }
            for job in args.dropFirst() {
                list.insert(job, at: 0)
                count(job)
            }
            keys[args[0]] = .list(list)
            return .integer(Int64(list.count))
        case "SADD":
            guard args.count >= 2 else { return .error("ERR wrong number of arguments for 'sadd' command") }
            var set: Set<[UInt8]>
            switch keys[args[0]] {
            case nil: set = []
            case .set(let existing): set = existing
            default: return .error(Self.wrongType)
            }
            let before = set.count
            set.formUnion(args.dropFirst())
            keys[args[0]] = .set(set)
            return .integer(Int64(set.count - before))
        case "ZADD":
            guard args.count >= 3, args.count % 2 == 1 else { return .error("ERR syntax error") }
            var zset: [[UInt8]: Double]
            switch keys[args[0]] {
            case nil: zset = [:]
            case .zset(let existing): zset = existing
            default: return .error(Self.wrongType)
            }
            var pairs: [(Double, [UInt8])] = []
            for index in stride(from: 1, to: args.count, by: 2) {
                guard let score = Double(String(decoding: args[index], as: UTF8.self)), score.isFinite else {
                    return .error("ERR value is not a valid float")
                }
                pairs.append((score, args[index + 1]))
            }
            var added: Int64 = 0
            for (score, member) in pairs {
                if zset.updateValue(score, forKey: member) == nil { added += 1 }
                count(member)
            }
            keys[args[0]] = .zset(zset)
            return .integer(added)
        case "LTRIM":
            // Only as the push script takes a refused batch back: `LTRIM key count -1`. The
            // elements it drops were never visible (the transaction runs as one), so they do not
            // count as written.
            guard args.count == 3, let start = Int(String(decoding: args[1], as: UTF8.self)), start >= 0,
                String(decoding: args[2], as: UTF8.self) == "-1"
            else { return .error("ERR the model takes LTRIM key <start ≥ 0> -1 only") }
            switch keys[args[0]] {
            case nil: return .status("OK")
            case .list(let list):
                for job in list.prefix(start) { written[Self.jid(in: job) ?? "?", default: 0] -= 1 }
                keys[args[0]] = start >= list.count ? nil : .list(Array(list.dropFirst(start)))
                return .status("OK")
            default: return .error(Self.wrongType)
            }
        default:
            return .error("ERR unknown command '\(name)' in the model")
        }
    }

    private func count(_ job: [UInt8]) {
        written[Self.jid(in: job) ?? "?", default: 0] += 1
    }

    /// The `jid` of a job's JSON (the simulation writes plain 24-hex jids).
    static func jid(in job: [UInt8]) -> String? {
        let marker = Array(#""jid":""#.utf8)
        guard let start = job.firstRange(of: marker)?.upperBound else { return nil }
        guard let end = job[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return String(decoding: job[start..<end], as: UTF8.self)
    }

    // MARK: faults and reads

    func set(_ key: String, _ value: Value?) {
        keys[Array(key.utf8)] = value
    }

    func value(_ key: [UInt8]) -> Value? { keys[key] }

    // MARK: replication and failover

    /// What the one replica has acknowledged: the master's data as of the last time it caught
    /// up. Replication is asynchronous and in order, so the replica always holds a prefix of the
    /// master's writes; `WAIT` returns once it holds all of them (or times out).
    private(set) var replicaKeys: [[UInt8]: Value] = [:]
    /// The replica is down (killed): it acknowledges nothing and cannot be promoted.
    var replicaDown = false

    /// The replica catches up with every write the master acknowledged so far.
    func replicate() {
        if !replicaDown { replicaKeys = keys }
    }

    /// Sentinel promotes the replica: the master's writes it had not acknowledged are gone (fence
    /// and record keys with the jobs, since a script replicates as one unit). Returns the jids of
    /// the jobs lost. The old master comes back as a replica and resyncs, so it holds the same.
    @discardableResult
    func failOver() -> Set<String> {
        let lost = Self.jobs(in: keys).subtracting(Self.jobs(in: replicaKeys))
        keys = replicaKeys
        return lost
    }

    /// The jids of the jobs in `data`'s lists and sorted sets, counted.
    static func jobCounts(in data: [[UInt8]: Value]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for value in data.values {
            switch value {
            case .list(let jobs): for job in jobs { counts[jid(in: job) ?? "?", default: 0] += 1 }
            case .zset(let members): for job in members.keys { counts[jid(in: job) ?? "?", default: 0] += 1 }
            default: continue
            }
        }
        return counts
    }

    static func jobs(in data: [[UInt8]: Value]) -> Set<String> { Set(jobCounts(in: data).keys) }

    /// The relay's own keys are lost (an eviction policy, or a restart that kept the jobs).
    func evictRelayKeys() {
        for key in keys.keys where key.starts(with: Array("outbox-relay:".utf8)) { keys[key] = nil }
    }
}
