import Foundation
import Logging
import OutboxRelay
import OutboxRelayDaemon
import OutboxRelayIO
import Testing

/// One event, one line: text from the outbox (split keys, reasons, server messages) can never
/// start a line of its own in the relay's log, in either format.
@Suite(.serialized) struct LogLineTests {
    /// Lines written by a handler, kept in memory.
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var text = ""

        var all: String {
            lock.lock()
            defer { lock.unlock() }
            return text
        }

        func logger(_ format: LineLogHandler.Format, secrets: [String] = []) -> Logger {
            Logger(label: "test") { _ in
                LineLogHandler(level: .debug, format: format, redactor: SecretRedactor(secrets: secrets)) { [self] line in
                    lock.lock()
                    text += line
                    lock.unlock()
                }
            }
        }
    }

    static let forged = "2026-01-01T00:00:00.000Z error forged line outbox.split_key=evil"
    /// Every C0 control character, DEL and a C1 control.
    static let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init) + ["\u{7F}", "\u{85}"]))

    /// The lines of `text`, split at every line feed byte (a String splits "\r\n" as one character).
    static func lines(_ text: String) -> [Substring] {
        text.utf8.split(separator: UInt8(ascii: "\n")).map { Substring($0) }
    }

    /// The text after the timestamp of each line.
    static func bodies(_ text: String) -> [Substring] {
        lines(text).map { $0.drop(while: { $0 != " " }).dropFirst() }
    }

    @Test func textEscapesControlCharactersInMessagesKeysAndValues() {
        let lines = Lines()
        let logger = lines.logger(.text)
        logger.info("relayed \(Self.controls) end", metadata: ["outbox.split_key": "k\n\(Self.forged)", "outbox.other\r\nx": "plain"])
        logger.info("value", metadata: ["outbox.split_key": "a\\nb \"q\" \u{1B}[31mred\u{7F}\t"])
        let bodies = Self.bodies(lines.all)
        #expect(lines.all.utf8.filter { $0 == 10 }.count == 2, "one line per event: \(lines.all)")
        let escaped = (0..<0x20).map { [9: #"\t"#, 10: #"\n"#, 13: #"\r"#][$0] ?? String(format: #"\u%04x"#, $0) }.joined() + #"\u007f\u0085"#
        #expect(bodies == [
            "info relayed \(escaped) end " + #"outbox.other\r\nx=plain outbox.split_key="k\n\#(Self.forged)""#,
            #"info value outbox.split_key="a\\nb \"q\" \u001b[31mred\u007f\t""#,
        ])
    }

    @Test func jsonEscapesEveryControlCharacter() throws {
        let lines = Lines()
        lines.logger(.json).info("m \(Self.controls)", metadata: ["outbox.split_key": "k\n\(Self.forged)\u{0}"])
        let text = lines.all
        #expect(text.utf8.filter { $0 == 10 }.count == 1)
        #expect(!text.dropLast().unicodeScalars.contains(where: { $0.value < 0x20 }), "\(text)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(object["message"] == "m \(Self.controls)")
        #expect(object["outbox.split_key"] == "k\n\(Self.forged)\u{0}")
    }

    @Test func aSplitKeyCannotForgeALogLineOfTheRelay() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let key = "k\n\(Self.forged)\r\n\(Self.forged)"
        try outbox.insert([(.named(key), #"{"class":"J","queue":"q","args":[1]}"#)])
        for format in ["text", "json"] {
            try outbox.insert([(.named(key), #"{"class":"J","queue":"q","args":[2]}"#), (.named(key), #"{"class":"J","queue":"q"}"#)])
            let relay = try RelayProcess([
                "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
                "--log-format", format, "--log-level", "debug",
            ])
            try waitUntil("rows relayed with \(format) logs") { try outbox.pendingCount() == 0 }
            relay.signal(SIGTERM)
            #expect(relay.waitForExit(seconds: 10) == 0)
            let log = relay.log
            let lines = Self.lines(log)
            #expect(lines.contains { $0.contains("relayed jobs") }, "\(log)")
            #expect(!lines.contains { $0.hasPrefix("2026-01-01") || $0.hasPrefix("\r2026") }, "a forged line: \(log)")
            #expect(!log.utf8.contains(13), "no carriage return either")
            for line in lines {
                if format == "text" {
                    #expect(line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (trace|debug|info|notice|warning|error|critical) .*/) != nil, "\(line)")
                } else {
                    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
                    #expect(object?["time"] != nil, "\(line)")
                }
            }
            if format == "text" {
                #expect(log.contains(#"outbox.split_key="k\n2026-01-01T00:00:00.000Z error forged line outbox.split_key=evil\r\n2026"#), "\(log)")
            }
        }
        #expect(try outbox.queue("q").count == 5)
    }

    @Test func statusAndDeadLetterTablesKeepOneRowPerRecord() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let key = "k\n\(Self.forged)\tx\ty"
        try outbox.insert([(.named(key), #"{"class":"J","queue":"q"}"#), (.named("plain"), #"{"class":"J","queue":"q"}"#)])
        try outbox.postgres.query(SQLStatement(
            """
            INSERT INTO \(outbox.queries.deadLetterTable.quoted) (id, split_key, format, payload, created_at, error, dead_lettered_at) \
            VALUES (1000, $1, 'sidekiq5', convert_to($2, 'UTF8'), now(), $3, now())
            """, [key, "{\n  \"class\": \"J\"\t\n}", "bad\r\nrow"]))
        let common = ["--database-url", outbox.servers.databaseURL, "--table", outbox.table.description]
        let (status, table) = try RelayProcess.run(["status"] + common)
        let (listed, letters) = try RelayProcess.run(["dead-letters", "list"] + common)
        #expect(status == 0 && listed == 0, "\(table) \(letters)")
        for (output, rows) in [(table, 3), (letters, 2)] {
            let lines = Self.lines(output)
            #expect(lines.count == rows, "one line per record: \(output)")
            #expect(lines.allSatisfy { $0.utf8.filter { $0 == 9 }.count == 4 }, "five columns each: \(output)")
            #expect(!output.utf8.contains(13))
        }
        #expect(table.contains(#"k\n2026-01-01T00:00:00.000Z error forged line outbox.split_key=evil\tx\ty"#), "\(table)")
        #expect(letters.contains(#"bad\r\nrow"# + "\t" + #"{\n  "class": "J"\t\n}"#), "\(letters)")
    }

    @Test func aStatusForSystemdIsOneLine() {
        #expect(SystemdNotifier.singleLine("STATUS=waiting: queue:x\nWATCHDOG=1\r\nREADY=1") == #"STATUS=waiting: queue:x\nWATCHDOG=1\r\nREADY=1"#)
        #expect(SystemdNotifier.singleLine("READY=1") == "READY=1")
    }
}
