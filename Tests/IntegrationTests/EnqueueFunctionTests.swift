import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// `outbox_relay_enqueue(...)`, which `migrate` installs: the payloads it writes, its refusals,
/// its transactions, and the README's snippets (SQL, a trigger, Ruby with ActiveRecord, Python
/// with psycopg2) run as written, each job executed by the real Sidekiq.
@Suite(.serialized) struct EnqueueFunctionTests {
    /// A schema of its own (the function is one per schema) with the migrated outbox and an
    /// `orders` table like the README's.
    final class Schema {
        let servers: TestServers
        let name: String
        let postgres: PostgresConnection
        let layout: OutboxLayout

        init(_ layout: OutboxLayout = .res) throws {
            servers = try TestServers.fromEnvironment()
            self.layout = layout
            name = "enqueue_\(getpid())_\(Int.random(in: 0..<1_000_000))"
            postgres = try PostgresConnection(connectionString: servers.databaseURL)
            try postgres.execute("CREATE SCHEMA \(name)")
            try postgres.execute("CREATE TABLE \(name).orders (id bigserial PRIMARY KEY, total numeric NOT NULL)")
            let (status, output) = try RelayProcess.run(["migrate", "--database-url", servers.databaseURL, "--schema", layout.rawValue, "--table", table.description])
            guard status == 0 else { throw TestSetupError.timedOut("migrate failed: \(output)") }
        }

        var table: TableName { try! TableName("\(name).\(layout.defaultTable)") }

        func drop() {
            _ = try? postgres.execute("DROP SCHEMA \(name) CASCADE")
        }

        /// `(split key, payload as a JSON object)` of every row, in id order.
        func rows() throws -> [(String?, [String: Any])] {
            let payload = layout == .res ? "convert_from(payload, 'UTF8')" : "payload::text"
            let key = layout == .res ? "split_key" : "NULL::varchar"
            let rows = try postgres.query(SQLStatement("SELECT \(key), \(payload) FROM \(table.quoted) ORDER BY id"))
            return try (0..<rows.count).map {
                (rows.text($0, 0), try JSONSerialization.jsonObject(with: Data(rows.text($0, 1)!.utf8)) as! [String: Any])
            }
        }
    }

    @Test func writesTheSidekiqPayloadOfTheJobAndReturnsItsJid() throws {
        let schema = try Schema()
        defer { schema.drop() }
        let before = Date().timeIntervalSince1970
        let result = try schema.postgres.query(SQLStatement(
            "SELECT \(schema.name).outbox_relay_enqueue('mailers', 'OrderMailer', $1::jsonb, options => $2::jsonb)",
            [#"[42, "ünï", {"k": [1, null]}]"#, #"{"retry": 5, "tags": ["billing"], "class": "Ignored"}"#]))
        let jid = try #require(result.text(0, 0))
        #expect(jid.count == 24 && jid.allSatisfy(\.isHexDigit))
        let rows = try schema.rows()
        #expect(rows.count == 1)
        let (key, job) = rows[0]
        #expect(key == "mailers", "the queue is the split key, as res_outbox's producer writes it")
        #expect(Set(job.keys) == ["class", "args", "queue", "jid", "created_at", "retry", "tags"])
        #expect(job["class"] as? String == "OrderMailer", "options cannot change the class")
        #expect(job["queue"] as? String == "mailers")
        #expect(job["jid"] as? String == jid)
        #expect((job["args"] as? NSArray) == [42, "ünï", ["k": [1, NSNull()]]] as NSArray)
        #expect(job["retry"] as? Int == 5)
        #expect(job["tags"] as? [String] == ["billing"])
        let createdAt = try #require(job["created_at"] as? Double)
        #expect(createdAt >= before - 1 && createdAt <= Date().timeIntervalSince1970 + 1)
    }

    @Test func defaultsRetryAndTakesAtAndAJidOfYourOwn() throws {
        let schema = try Schema()
        defer { schema.drop() }
        let jid = try schema.postgres.query(SQLStatement(
            "SELECT \(schema.name).outbox_relay_enqueue('later', 'OrderMailer', '[]', 'epoch'::timestamptz + interval '2000000000.25 seconds', '{\"jid\": \"abc123abc123abc123abc123\"}')"
        )).text(0, 0)
        #expect(jid == "abc123abc123abc123abc123")
        let job = try schema.rows()[0].1
        #expect(job["retry"] as? Bool == true)
        #expect(job["at"] as? Double == 2_000_000_000.25)
        #expect(job["args"] as? NSArray == [])
    }

    @Test(arguments: [
        ("'', 'X', '[]'", "outbox_relay_enqueue: queue must be a non-empty string"),
        ("'q', NULL, '[]'", "outbox_relay_enqueue: job_class must be a non-empty string"),
        ("'q', 'X', '{\"a\": 1}'", "outbox_relay_enqueue: args must be a JSON array, got object"),
        ("'q', 'X', '[]', NULL, '[1]'", "outbox_relay_enqueue: options must be a JSON object, got array"),
        ("'q', 'X', '[]', NULL, '{\"jid\": \"\"}'", "outbox_relay_enqueue: options.jid must be a non-empty string"),
    ])
    func refusesArgumentsSidekiqCouldNotRun(arguments: String, message: String) throws {
        let schema = try Schema()
        defer { schema.drop() }
        do {
            _ = try schema.postgres.query(SQLStatement("SELECT \(schema.name).outbox_relay_enqueue(\(arguments))"))
            Issue.record("no error")
        } catch {
            #expect(error.message.contains("ERROR:  \(message)"), "\(error.message)")
        }
        #expect(try schema.rows().isEmpty)
    }

    @Test func enqueuesNothingWhenTheTransactionRollsBack() throws {
        let schema = try Schema()
        defer { schema.drop() }
        try schema.postgres.execute("BEGIN")
        _ = try schema.postgres.query(SQLStatement("SELECT \(schema.name).outbox_relay_enqueue('mailers', 'OrderMailer', '[1]')"))
        try schema.postgres.execute("ROLLBACK")
        #expect(try schema.rows().isEmpty)
    }

    @Test func writesAPendingRowOfTheReliableJobLayout() throws {
        let schema = try Schema(.reliableJob)
        defer { schema.drop() }
        let jid = try schema.postgres.query(SQLStatement("SELECT \(schema.name).outbox_relay_enqueue('mailers', 'OrderMailer', '[7]')")).text(0, 0)
        let row = try schema.postgres.query(SQLStatement("SELECT jid, job_class, status, payload->>'jid' FROM \(schema.table.quoted)"))
        #expect(row.count == 1)
        #expect(row.text(0, 0) == jid)
        #expect(row.text(0, 1) == "OrderMailer")
        #expect(row.text(0, 2) == "pending")
        #expect(row.text(0, 3) == jid)
    }

    // MARK: the README's snippets

    struct Snippet {
        let language: String
        let code: String
    }

    /// The snippets of the README's "Writing jobs from your app" that `make test` runs, in order.
    static func readmeSnippets() throws -> [Snippet] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "Each of these snippets is run by `make test`"),
            let end = text.range(of: "A Ruby app on **ruby_event_store-outbox**", range: start.upperBound..<text.endIndex)
        else { throw TestSetupError.timedOut("the README has no 'Writing jobs from your app' snippets") }
        var snippets: [Snippet] = []
        var language: String?
        var code: [Substring] = []
        for line in text[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false) {
            if let current = language {
                if line == "```" {
                    snippets.append(Snippet(language: current, code: code.joined(separator: "\n") + "\n"))
                    language = nil
                    code = []
                } else {
                    code.append(line)
                }
            } else if line.hasPrefix("```") {
                language = String(line.dropFirst(3))
            }
        }
        return snippets
    }

    /// Runs one snippet as its language's program would, with the schema first on the search path
    /// (`PGOPTIONS`, which libpq reads for psql, ruby-pg and psycopg2); returns what it printed.
    func run(_ snippet: Snippet, in schema: Schema) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-relay-snippet-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        switch snippet.language {
        case "sql":
            try snippet.code.write(to: file, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
            process.arguments = ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", schema.servers.databaseURL, "-f", file.path]
        case "ruby":
            // The app around the snippet: its connection and its Order model.
            let prelude = """
                require "active_record"
                require "json"
                ActiveRecord::Base.establish_connection(ENV.fetch("DATABASE_URL"))
                class Order < ActiveRecord::Base; end

                """
            try (prelude + snippet.code).write(to: file, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/ruby")
            process.arguments = [file.path]
        case "python":
            try snippet.code.write(to: file, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [file.path]
        default:
            throw TestSetupError.timedOut("no runner for a \(snippet.language) snippet")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = schema.servers.databaseURL
        environment["PGOPTIONS"] = "-c search_path=\(schema.name)"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TestSetupError.timedOut("the README's \(snippet.language) snippet failed (\(process.terminationStatus)): \(text)")
        }
        return text
    }

    @Test func theReadmesSnippetsEnqueueJobsThatSidekiqRuns() throws {
        let snippets = try Self.readmeSnippets()
        #expect(snippets.map(\.language) == ["sql", "ruby", "python", "sql"])
        let schema = try Schema()
        defer { schema.drop() }
        var printed: [String] = []
        for snippet in snippets {
            printed.append(try run(snippet, in: schema).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let rows = try schema.rows()
        #expect(rows.map { ($0.1["args"] as? [Int]) ?? [] } == [[42], [1], [2], [43]], "SQL, Ruby, Python, then the trigger")
        let jids = rows.map { $0.1["jid"] as? String ?? "" }
        #expect(Array(printed.prefix(3)) == Array(jids.prefix(3)), "each snippet printed the jid of its job")
        #expect(printed[3] == "")

        let outbox = try TestOutbox(migrate: false)
        defer { outbox.drop() }
        var configuration = outbox.configuration()
        configuration.table = schema.table
        let relay = RelayRunner(configuration)
        try waitUntil("the snippets' jobs relayed") {
            try schema.postgres.query(SQLStatement("SELECT count(*) FROM \(schema.table.quoted) WHERE enqueued_at IS NULL")).int64(0, 0) == 0
        }
        #expect(relay.finish())
        let sidekiq = SidekiqServer(redisURL: outbox.redisURL)
        try sidekiq.start(queues: ["mailers"])
        defer { sidekiq.stop() }
        let runs = try sidekiq.waitForRuns(4, client: outbox.redis)
        #expect(runs.map(\.jid) == jids)
        #expect(runs.map(\.className) == Array(repeating: "OrderMailer", count: 4))
        #expect(runs.map(\.queue) == Array(repeating: "mailers", count: 4))
        #expect(runs.map { $0.args as? [Int] ?? [] } == [[42], [1], [2], [43]])
        let after = try sidekiq.inspect()
        #expect(after["retries"] as? Int == 0)
        #expect(after["dead"] as? Int == 0)
    }
}
