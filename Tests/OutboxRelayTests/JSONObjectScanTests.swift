import Testing

@testable import OutboxRelay

@Suite struct JSONObjectScanTests {
    func scan(_ text: String) throws(JSONScanError) -> JSONObjectScan {
        try JSONObjectScan(Array(text.utf8))
    }

    @Test func indexesTopLevelMembersOnly() throws {
        let text = #" { "a" : 1, "b": {"queue": "inner"}, "c":[1,{"d":2}], "queue":"q" } "#
        let result = try scan(text)
        #expect(result.members.map(\.key) == ["a", "b", "c", "queue"])
        #expect(result.members.map(\.kind) == [.number, .object, .array, .string])
        let b = try #require(result.member("b"))
        #expect(String(decoding: result.bytes[b.valueRange], as: UTF8.self) == #"{"queue": "inner"}"#)
        #expect(String(decoding: result.bytes[b.range], as: UTF8.self) == #""b": {"queue": "inner"}"#)
        #expect(result.string(try #require(result.member("queue"))) == "q")
    }

    @Test func decodesEscapesAndUnicode() throws {
        let result = try scan(#"{"s":"a\"b\\c\/\n\t\u00e9\ud83d\ude00 ü","k\u0065y":true}"#)
        #expect(result.string(try #require(result.member("s"))) == "a\"b\\c/\n\té😀 ü")
        #expect(result.member("key")?.kind == .bool)
    }

    @Test func lastDuplicateWins() throws {
        let result = try scan(#"{"queue":"a","queue":"b"}"#)
        #expect(result.string(try #require(result.member("queue"))) == "b")
    }

    @Test func readsNumbers() throws {
        let result = try scan(#"{"at":1700000000.25,"n":-0.5e2,"z":0}"#)
        #expect(result.number(try #require(result.member("at"))) == 1_700_000_000.25)
        #expect(result.number(try #require(result.member("n"))) == -50)
        #expect(result.string(try #require(result.member("z"))) == nil)
    }

    @Test func acceptsEmptyObject() throws {
        #expect(try scan("{}").members.isEmpty)
        #expect(try scan(" \n{ }\t").members.isEmpty)
    }

    @Test(arguments: [
        ("", "empty payload, expected a JSON object at byte 0"),
        ("[1,2]", "expected a JSON object at byte 0"),
        ("\"text\"", "expected a JSON object at byte 0"),
        ("{\"a\":1,}", "expected a string key at byte 7"),
        ("{\"a\":1} x", "unexpected text after the JSON object at byte 8"),
        ("{\"a\" 1}", "expected ':' after a key at byte 5"),
        ("{\"a\":01}", "expected ',' or '}' in an object at byte 6"),
        ("{\"a\":1.}", "invalid number at byte 7"),
        ("{\"a\":tru}", "invalid literal at byte 5"),
        ("{\"a\":\"x\ty\"}", "control character in a string at byte 7"),
        ("{\"a\":\"\\x\"}", "invalid escape in a string at byte 8"),
        ("{\"a\":\"\\u12g4\"}", "invalid \\u escape at byte 10"),
        ("{\"a\":[1,2}", "expected ',' or ']' in an array at byte 9"),
        ("{\"a\":\"open", "unterminated string at byte 10"),
        ("{\"a\":", "unexpected end of JSON at byte 5"),
    ])
    func rejectsInvalidJSON(text: String, message: String) {
        #expect(throws: JSONScanError.self) { try scan(text) }
        do {
            _ = try scan(text)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test(arguments: [
        [0xC3, 0x28],  // bad continuation
        [0xC0, 0xAF],  // overlong
        [0xED, 0xA0, 0x80],  // surrogate
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0xE2, 0x82],  // truncated
        [0xFF],
    ] as [[UInt8]])
    func rejectsInvalidUTF8(bad: [UInt8]) {
        let bytes = Array(#"{"a":""#.utf8) + bad + Array(#""}"#.utf8)
        #expect(throws: JSONScanError(message: "invalid UTF-8", offset: 6)) { try JSONObjectScan(bytes) }
    }

    /// `{"a":` and then containers down to `depth`, the outer object counting as 1.
    func nested(_ depth: Int, open: String, close: String) -> String {
        let inner = String(repeating: open, count: depth - 2) + open.prefix(1) + close
        return #"{"a":"# + inner + String(repeating: close, count: depth - 2) + "}"
    }

    /// Ruby's JSON.parse, as Sidekiq calls it, raises NestingError beyond 100 levels (the job's own
    /// object is level 1), so a deeper payload must be dead-lettered: the scan used to take 257.
    @Test(arguments: [("[", "]", 1), (#"{"k":"#, "}", 5)])
    func limitsNestingAsRubyDoes(open: String, close: String, width: Int) throws {
        #expect(JSONObjectScan.maximumDepth == 100)
        #expect(try scan(nested(100, open: open, close: close)).members.count == 1)
        #expect(throws: JSONScanError(message: "JSON nested too deeply", offset: 5 + 99 * width)) {
            try scan(nested(101, open: open, close: close))
        }
        #expect(throws: JSONScanError.self) { try scan(nested(257, open: open, close: close)) }
    }

    /// Ruby's json 2.6 mangles an unpaired surrogate escape: `\ud800\u0041` becomes U+10041,
    /// `\ud800abcdefg` becomes "?bcdefg", a lone `\udc00` bytes that are not UTF-8 (which Sidekiq
    /// cannot write back). The scan used to decode them to U+FFFD; it refuses them now.
    @Test(arguments: [
        #"\ud800"#, #"\udc00"#, #"\ud800\u0041"#, #"\ud800abcdefg"#, #"\ude00\ud83d"#, #"\ud800\ud800"#,
        #"\uDBFF x"#, #"x\ud83d"#,
    ])
    func refusesUnpairedSurrogates(escape: String) throws {
        let offset = escape.hasPrefix("x") ? 7 : 6
        #expect(throws: JSONScanError(message: "unpaired surrogate in a \\u escape", offset: offset)) {
            try scan(#"{"a":"\#(escape)"}"#)
        }
        #expect(throws: JSONScanError(message: "unpaired surrogate in a \\u escape", offset: offset - 4)) {
            try scan(#"{"\#(escape)":1}"#)
        }
    }

    @Test func decodesSurrogatePairs() throws {
        let result = try scan(#"{"a":"\ud800\udc00\uDBFF\uDFFF"}"#)
        #expect(result.string(try #require(result.member("a"))) == "\u{10000}\u{10FFFF}")
    }

    /// Ruby's Hash tells keys apart by their bytes; Swift's `==` by canonical equivalence, so
    /// `member("café")` used to find the NFD `"cafe\u0301"` written after it.
    @Test func comparesKeysAsBytes() throws {
        let result = try scan(#"{"caf\u00e9":1,"cafe\u0301":2,"K":3}"#)
        #expect(result.number(try #require(result.member("café"))) == 1)
        #expect(result.number(try #require(result.member("cafe\u{301}"))) == 2)
        #expect(result.member("\u{212A}") == nil)  // KELVIN SIGN, canonically equivalent to "K"
    }

    /// What json 2.6.1 parses beyond RFC 8259, refused on purpose (see `JSONObjectScan`).
    @Test(arguments: [
        ("{/* c */\"a\":1}", "expected a string key at byte 1"),
        ("{\"a\":1 // c\n}", "expected ',' or '}' in an object at byte 7"),
        ("{\"a\":1}/**/", "unexpected text after the JSON object at byte 7"),
        ("{\"a\":\"\\'\"}", "invalid escape in a string at byte 8"),
        ("{\"a\":\"\\é\"}", "invalid escape in a string at byte 8"),
    ])
    func refusesRubysLeniencies(text: String, message: String) {
        #expect(throws: JSONScanError.self) { try scan(text) }
        do {
            _ = try scan(text)
        } catch {
            #expect(error.description == message)
        }
    }

    /// What Ruby's JSON.parse refuses too (json 2.6.1 without allow_nan).
    @Test(arguments: [
        "\u{FEFF}{}", "{\u{0B}}", "{\u{0C}}", "{\u{A0}}", "{\"a\":NaN}", "{\"a\":-Infinity}", "{\"a\":+1}",
        "{\"a\":.5}", "{\"a\":-01}", "{\"a\":[1,]}", "{\"a\":\"\\u12\"}", "{\"a\":1}\u{0}",
    ])
    func refusesWhatRubyRefuses(text: String) {
        #expect(throws: JSONScanError.self) { try scan(text) }
    }

    /// Numbers at the limits parse in Ruby (1e400 to Infinity, 1E-400 to 0.0, big integers to
    /// Integer), so the scan accepts them; the encoder's own checks decide what `at` may be.
    @Test func acceptsNumbersAtTheLimits() throws {
        let result = try scan(#"{"a":1e400,"b":1E-400,"c":-0,"d":123456789012345678901234567890}"#)
        #expect(result.number(try #require(result.member("a"))) == .infinity)
        #expect(result.number(try #require(result.member("b"))) == 0)
        #expect(result.number(try #require(result.member("c")))?.sign == .minus)
        #expect(result.number(try #require(result.member("d"))) == 1.2345678901234568e29)
    }

    /// The parser reads through a buffer pointer: every prefix of a document that uses every
    /// construct must be refused cleanly, never read past its end.
    @Test func refusesEveryTruncationOfADocument() {
        let document = Array(#"{"a":[1,-2.5e+3,true,false,null,{"b":"\u00e9\ud83d\ude00\n"}],"é":"ü€😀","c":{}}"#.utf8)
        #expect(throws: Never.self) { try JSONObjectScan(document) }
        for length in 0..<document.count {
            #expect(throws: JSONScanError.self) { try JSONObjectScan(Array(document[..<length])) }
        }
    }

    // MARK: the word-at-a-time skip over plain string bytes

    /// `{"a":"` + `prefix` plain bytes + `inner` + `suffix` plain bytes + `"}`: with the prefix
    /// running from 0 to 20 bytes, `inner` falls at every offset within a word, and the string
    /// crosses word boundaries before and after it.
    func plainString(prefix: Int, _ inner: [UInt8], suffix: Int = 11) -> [UInt8] {
        let plain = Array("abcdefghij klmnopqrstuvwxyz~\u{7F}ABCDEFGH".utf8)
        return Array(#"{"a":""#.utf8) + plain.prefix(prefix) + inner + plain.prefix(suffix) + Array(#""}"#.utf8)
    }

    @Test func decodesLongPlainStringsExactly() throws {
        for length in 0...80 {
            let text = String(repeating: "x !~/\u{7F}0aZ", count: 10).prefix(length)
            let result = try JSONObjectScan(Array(#"{"a":""#.utf8) + Array(text.utf8) + Array(#"","b":1}"#.utf8))
            #expect(result.string(try #require(result.member("a"))) == String(text))
            #expect(result.member("b")?.valueRange == (6 + text.utf8.count + 6)..<(6 + text.utf8.count + 7))
        }
    }

    @Test(arguments: 0...20)
    func findsEscapesAndUTF8AtEveryOffset(prefix: Int) throws {
        for (inner, decoded) in [
            (#"\""#, "\""), (#"\\"#, "\\"), (#"\/"#, "/"), (#"\n"#, "\n"), (#"\u0041"#, "A"),
            (#"\ud83d\ude00"#, "😀"), ("é", "é"), ("€", "€"), ("😀", "😀"),
        ] {
            let bytes = plainString(prefix: prefix, Array(inner.utf8))
            let result = try JSONObjectScan(bytes)
            let plain = String(decoding: bytes[6..<(6 + prefix)], as: UTF8.self)
            let after = String(decoding: bytes[(6 + prefix + inner.utf8.count)..<(bytes.count - 2)], as: UTF8.self)
            #expect(result.string(try #require(result.member("a"))) == plain + decoded + after)
        }
    }

    @Test(arguments: 0...20)
    func refusesControlCharactersAndBadUTF8AtEveryOffset(prefix: Int) {
        for control in UInt8(0)..<0x20 {
            #expect(throws: JSONScanError(message: "control character in a string", offset: 6 + prefix)) {
                try JSONObjectScan(plainString(prefix: prefix, [control]))
            }
        }
        for bad: [UInt8] in [[0xFF], [0x80], [0xC3, 0x28], [0xED, 0xA0, 0x80]] {
            #expect(throws: JSONScanError(message: "invalid UTF-8", offset: 6 + prefix)) {
                try JSONObjectScan(plainString(prefix: prefix, bad))
            }
        }
    }

    @Test(arguments: 0...20)
    func endsTheStringAtAQuoteAtEveryOffset(prefix: Int) throws {
        let bytes = plainString(prefix: prefix, Array(#"","b":"x"#.utf8))
        let result = try JSONObjectScan(bytes)
        #expect(result.member("a")?.valueRange == 5..<(7 + prefix))
        #expect(result.members.map(\.key) == ["a", "b"])
    }

    @Test(arguments: 0...20)
    func refusesAStringThatRunsToTheEnd(length: Int) {
        let bytes = Array(#"{"a":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: length)
        #expect(throws: JSONScanError(message: "unterminated string", offset: bytes.count)) { try JSONObjectScan(bytes) }
    }
}
