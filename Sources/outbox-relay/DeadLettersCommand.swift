import ArgumentParser
import Foundation
import OutboxRelay

/// `outbox-relay dead-letters list|retry|discard`: rows the relay could not relay.
struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "List dead-lettered rows, put them back into the outbox after fixing them, or discard them.",
        subcommands: [List.self, Retry.self, Discard.self]
    )

    struct Target: ParsableArguments {
        @OptionGroup var outbox: OutboxOptions

        @OptionGroup var database: DatabaseOptions

        func session() throws -> (DatabaseSession, OutboxQueries) {
            (try database.session(), try outbox.queries())
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters in id order.")

        @OptionGroup var target: Target

        @Option(help: "Most rows to list.")
        var limit: Int = 100

        @Flag(help: "One JSON object per line instead of a table.")
        var json = false

        func run() async throws {
            let (session, queries) = try target.session()
            let rows = try session.query(queries.listDeadLetters(limit: limit), binary: true)
            if !json { print("id\tsplit_key\tdead_lettered_at\terror\tpayload") }
            for row in 0..<rows.count {
                let payload = String(decoding: rows.bytes(row, 4) ?? [], as: UTF8.self)
                let fields = (
                    id: rows.int64(row, 0) ?? 0, key: rows.text(row, 1), error: rows.text(row, 2) ?? "",
                    at: rows.text(row, 3) ?? ""
                )
                if json {
                    let object: [String: Any] = [
                        "id": fields.id, "split_key": fields.key ?? NSNull(), "error": fields.error,
                        "dead_lettered_at": fields.at, "payload": payload,
                    ]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    let text = [fields.key ?? "(null)", fields.at, fields.error, String(payload.prefix(200))].map(LineText.escaped)
                    print("\(fields.id)\t" + text.joined(separator: "\t"))
                }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move dead letters back into the outbox as pending rows, with their original ids.",
            discussion: "Fix the payload first, for example: UPDATE event_store_outbox_dead_letters SET payload = convert_to('{…}', 'UTF8') WHERE id = 42;"
        )

        @OptionGroup var target: Target

        @Option(name: .customLong("id"), help: "A dead letter's id; repeat for several.")
        var ids: [Int64] = []

        @Flag(help: "Every dead letter.")
        var all = false

        func validate() throws {
            guard all != !ids.isEmpty else { throw ValidationError("name rows with --id N (repeatable), or --all") }
        }

        func run() async throws {
            let (session, queries) = try target.session()
            let moved = try session.query(queries.retryDeadLetters(all ? nil : ids))
            print("moved \(moved.count) dead letter(s) back to \(queries.table): \((0..<moved.count).compactMap { moved.int64($0, 0) }.map(String.init).joined(separator: ","))")
            if !all && moved.count < ids.count { throw CommandFailure("some ids were not in \(queries.deadLetterTable)") }
        }
    }

    struct Discard: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")

        @OptionGroup var target: Target

        @Option(name: .customLong("id"), help: "A dead letter's id; repeat for several.")
        var ids: [Int64]

        func run() async throws {
            let (session, queries) = try target.session()
            let deleted = try session.query(queries.discardDeadLetters(ids))
            print("discarded \(deleted.count) dead letter(s)")
            if deleted.count < ids.count { throw CommandFailure("some ids were not in \(queries.deadLetterTable)") }
        }
    }
}
