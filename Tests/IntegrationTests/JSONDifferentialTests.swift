import Foundation
import OutboxRelay
import Testing

/// `JSONObjectScan` against the parser that matters: Ruby's `JSON.parse`, which Sidekiq 6.4 calls
/// on every job it fetches (Debian 12: ruby 3.1, json 2.6.1). Seeded documents, generated and
/// mutated, go to one long-lived `ruby` process; every verdict, top-level key and decoded string
/// member must match.
///
/// The scan accepts exactly what json 2.6.1 parses into a Hash *and* RFC 8259 allows, with strings
/// that are well-formed Unicode. Where json 2.6.1 is more lenient, the Ruby side names the
/// leniency and the scan must refuse (see `JSONObjectScan`): comments, invalid escapes such as
/// `\'`, unpaired `\uD800`-style surrogates, and bytes that are not UTF-8.
///
/// `JSON_DIFF_SEED` and `JSON_DIFF_DOCUMENTS` replay or lengthen a run.
@Suite struct JSONDifferentialTests {
    @Test func scanAgreesWithRubysJSONParse() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["JSON_DIFF_SEED"].flatMap { UInt64($0) } ?? 0x5EED_12
        let count = environment["JSON_DIFF_DOCUMENTS"].flatMap { Int($0) } ?? 20_000
        var generator = JSONDocumentGenerator(seed: seed)
        let documents = (0..<count).map { generator.document(number: $0) }
        let verdicts = try RubyJSONParse.verdicts(documents)
        try #require(
            verdicts.count == documents.count, "ruby answered \(verdicts.count) of \(documents.count) documents")

        var disagreements = 0
        var kinds: [String: Int] = [:]
        for (number, (document, ruby)) in zip(documents, verdicts).enumerated() {
            guard let problem = Self.disagreement(document, ruby) else { continue }
            disagreements += 1
            kinds[problem.kind, default: 0] += 1
            if disagreements <= 10 {
                Issue.record(
                    """
                    seed \(seed) document \(number): \(problem.kind): \(problem.detail)
                    document: \(Self.hex(document))
                    text: \(String(decoding: document, as: UTF8.self).debugDescription)
                    ruby: \(ruby.line)
                    """)
            }
        }
        let jobs = verdicts.filter { $0.parsed && $0.object }
        let accepted = documents.filter { (try? JSONObjectScan($0)) != nil }.count
        var leniencies: [String: Int] = [:]
        for verdict in jobs { for leniency in verdict.leniencies { leniencies[leniency, default: 0] += 1 } }
        print(
            "JSONDifferentialTests: seed \(seed), \(count) documents; Ruby parses \(verdicts.filter(\.parsed).count),",
            "\(jobs.count) of them objects, \(jobs.filter(\.leniencies.isEmpty).count) without leniency \(leniencies);",
            "the scan accepts \(accepted)")
        let tally = kinds.sorted { $0.value > $1.value }.map { "\n  \($0.value) × \($0.key)" }.joined()
        #expect(disagreements == 0, "\(disagreements) of \(count) documents disagree (seed \(seed)):\(tally)")
    }

    /// What is wrong with the scan's reading of `document`, or `nil` when it reads it as Ruby does.
    static func disagreement(_ document: [UInt8], _ ruby: RubyVerdict) -> (kind: String, detail: String)? {
        let scan: JSONObjectScan
        do {
            scan = try JSONObjectScan(document)
        } catch {
            if ruby.parsed && ruby.object && ruby.leniencies.isEmpty {
                return (
                    "Ruby parses it, the scan refuses it (\(error.message))", "it would be dead-lettered wrongly (\(error))"
                )
            }
            return nil
        }
        guard ruby.parsed else {
            return ("Ruby refuses it (\(ruby.error)), the scan accepts it", "Sidekiq could not parse the job")
        }
        guard ruby.object else { return ("Ruby reads no object here, the scan does", "") }
        guard ruby.leniencies.isEmpty else {
            let leniencies = ruby.leniencies.joined(separator: ", ")
            return ("the scan accepts what only a lenient parser takes (\(leniencies))", "Sidekiq may parse it differently")
        }
        // Ruby's Hash keeps each key where it first appeared, with its last value.
        var keys: [[UInt8]] = []
        var seen = Set<[UInt8]>()
        for member in scan.members where seen.insert(Array(member.key.utf8)).inserted {
            keys.append(Array(member.key.utf8))
        }
        guard keys.map(hex) == ruby.keys else {
            return ("the top-level keys differ", "\(keys.map(hex)) but Ruby has \(ruby.keys)")
        }
        // Looked up as the encoder looks up `queue`, `class` and `jid`.
        var strings: [String: String] = [:]
        var kinds: [String: String] = [:]
        for key in keys {
            guard let member = scan.member(String(decoding: key, as: UTF8.self)) else {
                return ("member(_:) misses a key", hex(key))
            }
            kinds[hex(key)] = "\(member.kind)"
            if let value = scan.string(member) { strings[hex(key)] = hex(Array(value.utf8)) }
        }
        guard kinds == ruby.kinds else {
            return ("the kinds of the members differ", "\(kinds) but Ruby has \(ruby.kinds)")
        }
        guard strings == ruby.strings else {
            return ("the decoded string members differ", "\(strings) but Ruby decodes \(ruby.strings)")
        }
        return nil
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}

/// How Ruby's `JSON.parse` read one document.
struct RubyVerdict {
    let line: String
    let parsed: Bool
    let error: String
    /// The result is a Hash (a job); 2.6.1 also parses any scalar or array at the top.
    let object: Bool
    /// What json 2.6.1 took that RFC 8259 does not allow (or that it decodes into something else).
    let leniencies: [String]
    /// Top-level keys in the Hash's order, as hex of their UTF-8 bytes.
    let keys: [String]
    /// Hex key to the JSON type of its (last) value: string, number, bool, null, array, object.
    let kinds: [String: String]
    /// Hex key to hex value, for each top-level member whose value is a string.
    let strings: [String: String]
}

/// One `ruby` process for the whole run: documents go in length-prefixed (4 bytes, big-endian),
/// one JSON line per document comes out.
enum RubyJSONParse {
    static let script = #"""
        require "json"
        require "strscan"
        $stdin.binmode
        $stdout.binmode

        # What json 2.6.1 accepted beyond RFC 8259 (or decodes differently), found by a tokenizer
        # that runs only on documents it parsed, so it never has to handle broken syntax.
        def leniencies(doc)
          found = []
          found << "invalid UTF-8" unless doc.dup.force_encoding(Encoding::UTF_8).valid_encoding?
          s = StringScanner.new(doc)
          until s.eos?
            if s.skip(%r{/\*.*?\*/}mn) || s.skip(%r{//[^\n]*\n}n)
              found << "comment"
            elsif s.skip(/"/n)
              until s.skip(/"/n)
                next if s.skip(/[^"\\]+/n)
                if s.skip(/\\u[dD][89abAB]\h\h/n)
                  found << "unpaired surrogate" unless s.skip(/\\u[dD][c-fC-F]\h\h/n)
                elsif s.skip(/\\u[dD][c-fC-F]\h\h/n)
                  found << "unpaired surrogate"
                elsif !s.skip(%r{\\(?:["\\/bfnrt]|u\h{4})}n)
                  s.skip(/\\/n)
                  found << "invalid escape"
                end
              end
            else
              s.skip(%r{[^"/]+|.}mn)
            end
          end
          found.uniq
        end

        def kind(value)
          case value
          when String then "string"
          when Integer, Float then "number"
          when true, false then "bool"
          when nil then "null"
          when Array then "array"
          else "object"
          end
        end

        def hex(string)
          string.b.unpack1("H*")
        end

        while (header = $stdin.read(4))
          doc = $stdin.read(header.unpack1("N")) || ""
          answer =
            begin
              # As Sidekiq.load_json receives it from redis-rb: the bytes, tagged UTF-8.
              value = JSON.parse(doc.dup.force_encoding(Encoding::UTF_8))
              result = { "parsed" => true, "object" => value.is_a?(Hash), "leniencies" => leniencies(doc.b) }
              if value.is_a?(Hash)
                result["keys"] = value.keys.map { |key| hex(key) }
                result["kinds"] = value.to_h { |k, v| [hex(k), kind(v)] }
                result["strings"] = value.select { |_, v| v.is_a?(String) }.to_h { |k, v| [hex(k), hex(v)] }
              end
              result
            rescue StandardError => e
              { "parsed" => false, "error" => e.class.name }
            end
          $stdout.write(JSON.generate(answer), "\n")
        end
        """#

    static func verdicts(_ documents: [[UInt8]]) throws -> [RubyVerdict] {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ruby") else {
            throw RubyMissing()
        }
        var input = Data()
        for document in documents {
            withUnsafeBytes(of: UInt32(document.count).bigEndian) { input.append(contentsOf: $0) }
            input.append(contentsOf: document)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ruby")
        process.arguments = ["-e", script]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        // Written from another thread while this one reads, so neither pipe can fill up and stall.
        let writer = stdin.fileHandleForWriting
        let payload = input
        let writing = Thread {
            writer.write(payload)
            try? writer.close()
        }
        writing.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw RubyFailed(status: process.terminationStatus) }
        return try output.split(separator: UInt8(ascii: "\n")).map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
            return RubyVerdict(
                line: String(decoding: line, as: UTF8.self),
                parsed: object["parsed"] as! Bool,
                error: object["error"] as? String ?? "",
                object: object["object"] as? Bool ?? false,
                leniencies: object["leniencies"] as? [String] ?? [],
                keys: object["keys"] as? [String] ?? [],
                kinds: object["kinds"] as? [String: String] ?? [:],
                strings: object["strings"] as? [String: String] ?? [:])
        }
    }

    struct RubyMissing: Error, CustomStringConvertible {
        var description: String { "/usr/bin/ruby is missing: `make test-deps` installs it (Debian's ruby)" }
    }

    struct RubyFailed: Error, CustomStringConvertible {
        let status: Int32
        var description: String { "the ruby JSON.parse helper exited with status \(status)" }
    }
}
