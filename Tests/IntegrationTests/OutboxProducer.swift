import Foundation
import OutboxRelay
import OutboxRelayIO

/// An application committing jobs on its own thread while a test breaks servers: every 10 ms one
/// transaction of `perCommit` rows over split keys k0…k3, job `n` in queue `k<n % 4>` with `args
/// [n]`. A commit that fails is not retried (it may or may not have committed, as for any app);
/// the producer reconnects and goes on with new numbers, so the table is the truth of what exists.
final class OutboxProducer: @unchecked Sendable {
    static let keys = ["k0", "k1", "k2", "k3"]
    private let url: String
    private let table: TableName
    private let perCommit: Int
    private let lock = NSLock()
    private var stopping = false
    private var paused = false
    private var finished = false
    private var next = 1
    private var connection: PostgresConnection?

    init(url: String, table: TableName, perCommit: Int = 10) {
        self.url = url
        self.table = table
        self.perCommit = perCommit
        Thread.detachNewThread { [self] in loop() }
    }

    /// Numbers handed out so far (committed or not).
    var produced: Int { lock.withLock { next - 1 } }

    /// Stops committing until ``resume()``, after the commit in hand.
    func pause() {
        lock.withLock { paused = true }
    }

    func resume() {
        lock.withLock { paused = false }
    }

    func stop() {
        lock.withLock { stopping = true }
        while !lock.withLock({ finished }) { Thread.sleep(forTimeInterval: 0.01) }
    }

    private func loop() {
        while !lock.withLock({ stopping }) {
            if lock.withLock({ paused }) {
                Thread.sleep(forTimeInterval: 0.01)
                continue
            }
            let first = lock.withLock { () -> Int in
                defer { next += perCommit }
                return next
            }
            do {
                if connection?.isHealthy != true { connection = try PostgresConnection(connectionString: url) }
                try connection!.query(SQLStatement(
                    """
                    INSERT INTO \(table.quoted) (split_key, format, payload, created_at) \
                    SELECT 'k' || (n % 4), 'sidekiq5', convert_to(json_build_object('class', 'HAJob', 'queue', 'k' || (n % 4), \
                    'args', json_build_array(n), 'jid', lpad(to_hex(n), 24, '0'))::text, 'UTF8'), now() AT TIME ZONE 'utc' \
                    FROM generate_series($1::int, $2::int) AS n ORDER BY n
                    """, [String(first), String(first + perCommit - 1)]))
            } catch {
                connection = nil
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        connection = nil
        lock.withLock { finished = true }
    }
}

/// What a run left: the rows of the table and the jobs in Redis, compared job by job.
struct DeliveryCount: CustomStringConvertible {
    /// Rows in the table, marked or not.
    var rows = 0
    var pending = 0
    /// Marked rows whose job is not in Redis.
    var lost = 0
    /// Extra copies of jobs in Redis.
    var duplicated = 0
    /// Jobs in Redis whose row the table no longer has (a failover took the row away).
    var orphaned = 0
    /// Queues whose jobs are not in row order (ignoring duplicates).
    var outOfOrder: [String] = []
    /// The lost rows' producer numbers, as ranges, to tell a failure's shape.
    var lostRows = ""

    /// `1-3,7,9-12` for [1, 2, 3, 7, 9, 10, 11, 12] (the first 20 ranges).
    static func ranges(_ numbers: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        while index < numbers.count, parts.count < 20 {
            var end = index
            while end + 1 < numbers.count, numbers[end + 1] == numbers[end] + 1 { end += 1 }
            parts.append(end == index ? "\(numbers[index])" : "\(numbers[index])-\(numbers[end])")
            index = end + 1
        }
        return parts.joined(separator: ",") + (index < numbers.count ? ",…" : "")
    }

    var description: String {
        "\(rows) rows (\(pending) pending): \(lost) lost, \(duplicated) duplicated, \(orphaned) jobs of rows the database lost, "
            + "out of order: \(outOfOrder.isEmpty ? "none" : outOfOrder.joined(separator: ","))"
            + (lostRows.isEmpty ? "" : "; lost rows: \(lostRows)")
    }

    /// Counts the table `table` on `postgres` against queues k0…k3 on `redis`.
    static func of(table: TableName, postgres: PostgresConnection, redis: RedisConnection) throws -> DeliveryCount {
        var count = DeliveryCount()
        let rows = try postgres.query(SQLStatement(
            "SELECT (convert_from(payload, 'UTF8')::json->'args'->>0)::int, enqueued_at IS NOT NULL FROM \(table.quoted) ORDER BY id"))
        var marked: [Int: Bool] = [:]
        for row in 0..<rows.count { marked[Int(rows.int64(row, 0)!)] = rows.bool(row, 1)! }
        count.rows = marked.count
        count.pending = marked.values.filter { !$0 }.count
        var seen: [Int: Int] = [:]
        for key in OutboxProducer.keys {
            guard case .array(let items) = try redis.send([RedisCommand("LRANGE", "queue:\(key)", "0", "-1")])[0] else { continue }
            let numbers = items.reversed().map { item -> Int in
                let object = try! JSONSerialization.jsonObject(with: Data((item.text ?? "").utf8)) as! [String: Any]
                return (object["args"] as! [NSNumber])[0].intValue
            }
            var last = Int.min
            var ordered = true
            for n in numbers {
                seen[n, default: 0] += 1
                if seen[n] == 1 {
                    if n < last { ordered = false }
                    last = n
                }
            }
            if !ordered { count.outOfOrder.append(key) }
        }
        for (n, isMarked) in marked where isMarked && seen[n] == nil { count.lost += 1 }
        count.lostRows = Self.ranges(marked.filter { $0.value && seen[$0.key] == nil }.keys.sorted())
        for (n, copies) in seen {
            count.duplicated += copies - 1
            if marked[n] == nil { count.orphaned += 1 }
        }
        return count
    }
}
