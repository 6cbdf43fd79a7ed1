import ArgumentParser
import Foundation
import OutboxRelay

/// `outbox-relay status`: per split key, what is pending, how old, who holds the lease, and dead
/// letters; exits 2 when a key's oldest pending row is older than `--max-age`.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Report pending rows, their age, lease holders and dead letters per split key."
    )

    @OptionGroup var outbox: OutboxOptions

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "One JSON object instead of a table.")
    var json = false

    @Option(help: ArgumentHelp("Exit with status 2 when a key's oldest pending row is older than this ISO-8601 duration.", valueName: "duration"))
    var maxAge: String?

    struct KeyStatus {
        var key: SplitKey
        var pending = 0
        var oldestAge: Double?
        var deadLetters = 0
        var holder: String?
    }

    func validate() throws {
        if let maxAge {
            do { _ = try ISODuration(maxAge) } catch { throw ValidationError("--max-age: \(error.message)") }
        }
    }

    func run() async throws {
        let session = try database.session()
        let queries = try outbox.queries()
        let resolved = try session.query(queries.resolveTable)
        guard resolved.count == 1, let schema = resolved.text(0, 0), let name = resolved.text(0, 1) else {
            throw CommandFailure("the outbox table \(queries.table) does not exist")
        }
        var keys: [SplitKey: KeyStatus] = [:]
        let pending = try session.query(queries.pendingSummary)
        for row in 0..<pending.count {
            let key = SplitKey(pending.text(row, 0))
            keys[key, default: KeyStatus(key: key)].pending = Int(pending.int64(row, 1) ?? 0)
            keys[key]!.oldestAge = pending.text(row, 2).flatMap(Double.init)
        }
        if let letters = try? session.connection.query(queries.deadLetterSummary) {
            for row in 0..<letters.count {
                let key = SplitKey(letters.text(row, 0))
                keys[key, default: KeyStatus(key: key)].deadLetters = Int(letters.int64(row, 1) ?? 0)
            }
        }
        let locks = try session.query(OutboxQueries.leaseHolders)
        var holders: [String: String] = [:]
        for row in 0..<locks.count {
            holders[locks.text(row, 0) ?? ""] = "\(locks.text(row, 2) ?? "?") (pid \(locks.text(row, 1) ?? "?"), \(locks.text(row, 3) ?? "?"))"
        }
        let lockedKeys = outbox.schema.hasSplitKeys ? Array(keys.keys) : [.null]
        for key in lockedKeys {
            let lease = LeaseKey(table: "\(schema).\(name)", format: queries.leaseFormat, splitKey: key)
            if let holder = holders[String(lease.value)] { keys[key, default: KeyStatus(key: key)].holder = holder }
        }
        let report = keys.values.sorted { $0.key.description < $1.key.description }
        print(json ? Self.json(report, table: "\(schema).\(name)") : Self.table(report))
        if let maxAge, let limit = try? ISODuration(maxAge), let late = report.first(where: { ($0.oldestAge ?? 0) > limit.seconds }) {
            FileHandle.standardError.write(Data("outbox-relay: split key \(LineText.escaped(late.key.description)) has a pending row \(String(format: "%.0f", late.oldestAge ?? 0)) s old, more than --max-age \(maxAge)\n".utf8))
            throw ExitCode(2)
        }
    }

    static func table(_ report: [KeyStatus]) -> String {
        var lines = ["split_key\tpending\toldest_pending_s\tdead_letters\tlease_holder"]
        for status in report {
            let age = status.oldestAge.map { String(format: "%.1f", $0) } ?? "-"
            let holder = LineText.escaped(status.holder ?? "-")
            lines.append("\(LineText.escaped(status.key.description))\t\(status.pending)\t\(age)\t\(status.deadLetters)\t\(holder)")
        }
        return lines.joined(separator: "\n")
    }

    static func json(_ report: [KeyStatus], table: String) -> String {
        let keys: [[String: Any]] = report.map {
            [
                "split_key": $0.key.value ?? NSNull(), "pending": $0.pending, "oldest_pending_age_seconds": $0.oldestAge ?? NSNull(),
                "dead_letters": $0.deadLetters, "lease_holder": $0.holder ?? NSNull(),
            ]
        }
        let data = try! JSONSerialization.data(withJSONObject: ["table": table, "keys": keys], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
