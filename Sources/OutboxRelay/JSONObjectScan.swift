/// The top-level members of a JSON object, located in its UTF-8 bytes.
///
/// The whole text is validated (RFC 8259 grammar, well-formed UTF-8, nesting at most
/// ``maximumDepth`` deep) but only the top level is indexed, and nothing is decoded until asked:
/// the relay reads a handful of fields (`queue`, `at`, `jid`) and splices `enqueued_at` into the
/// original bytes, so every other value reaches Redis byte for byte.
///
/// What it accepts is what both RFC 8259 and Sidekiq's parser accept: Sidekiq 6.4 reads each job
/// with a plain `JSON.parse` (Ruby's json 2.6.1 on Debian 12), which refuses nesting deeper than
/// 100 and gives unpaired `\uD800`-style surrogates meanings of its own, so the scan refuses
/// both. json 2.6.1 also takes `/* */` and `//` comments, escapes such as `\'` or `\x`, and bytes
/// that are not UTF-8; the scan refuses those on purpose, though Sidekiq would parse the job
/// today: json 2.17 rejects such escapes, comments are deprecated (refused from json 3.0), and a
/// string that is not UTF-8 makes Sidekiq's own `JSON.generate` raise when it retries the job.
/// A refused payload is dead-lettered, where it can be fixed and retried; a pushed one that
/// Sidekiq cannot read goes to its dead set unrun, or is lost when scheduled. The differential
/// test `JSONDifferentialTests` holds the scan to Ruby's verdicts, keys and decoded strings.
public struct JSONObjectScan: Sendable {
    /// The JSON type of a member's value.
    public enum Kind: Sendable, Equatable {
        case object, array, string, number, bool, null
    }

    /// One `"key": value` pair of the top-level object.
    public struct Member: Sendable, Equatable {
        /// The decoded key.
        public let key: String
        /// Byte range of the whole member, from the key's opening quote to the value's last byte.
        public let range: Range<Int>
        /// Byte range of the value alone.
        public let valueRange: Range<Int>
        public let kind: Kind
    }

    /// How deep objects and arrays may nest, the payload's own object counting as 1: Ruby's
    /// `JSON.parse` (json 2.x, as Sidekiq calls it) raises `NestingError` beyond its default
    /// `max_nesting` of 100, so Sidekiq could not read a deeper job. Such a payload is
    /// dead-lettered, not pushed.
    public static let maximumDepth = 100

    public let bytes: [UInt8]
    public let members: [Member]

    public init(_ bytes: [UInt8]) throws(JSONScanError) {
        self.members = try bytes.withUnsafeBufferPointer { (buffer) throws(JSONScanError) in
            var parser = Parser(bytes: buffer)
            return try parser.parseDocument()
        }
        self.bytes = bytes
    }

    /// The last member with this key, as JSON parsers that keep the last duplicate see it. Keys
    /// are compared as bytes, as Ruby's Hash does: `"caf\u00e9"` and `"cafe\u0301"` are two keys.
    public func member(_ key: String) -> Member? {
        members.last { $0.key.hasSameBytes(as: key) }
    }

    /// The member's value decoded as a string, or `nil` when it is not a JSON string.
    public func string(_ member: Member) -> String? {
        guard member.kind == .string else { return nil }
        return bytes.withUnsafeBufferPointer { buffer in
            var parser = Parser(bytes: buffer)
            parser.index = member.valueRange.lowerBound
            return try? parser.parseString(decode: true)
        }
    }

    /// The member's value as a number, or `nil` when it is not a JSON number.
    public func number(_ member: Member) -> Double? {
        guard member.kind == .number else { return nil }
        return Double(String(decoding: bytes[member.valueRange], as: UTF8.self))
    }
}

/// Why a payload is not a JSON object.
public struct JSONScanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public let offset: Int

    public var description: String { "\(message) at byte \(offset)" }
}

/// Reads the bytes of a payload through a buffer pointer, valid while the parser is: every
/// read is checked against `bytes.count` by the grammar itself.
private struct Parser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws(JSONScanError) -> [JSONObjectScan.Member] {
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else {
            if index == bytes.count { throw fail("empty payload, expected a JSON object") }
            throw fail("expected a JSON object")
        }
        let members = try parseObject(depth: 1, collect: true)
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected text after the JSON object") }
        return members
    }

    // MARK: values

    /// Parses the value at `index`, inside a container `depth` deep.
    mutating func parseValue(depth: Int) throws(JSONScanError) -> JSONObjectScan.Kind {
        guard let byte = peek() else { throw fail("unexpected end of JSON") }
        switch byte {
        case UInt8(ascii: "{"):
            _ = try parseObject(depth: depth + 1, collect: false)
            return .object
        case UInt8(ascii: "["):
            try parseArray(depth: depth + 1)
            return .array
        case UInt8(ascii: "\""):
            _ = try parseString(decode: false)
            return .string
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try parseNumber()
            return .number
        default:
            throw fail("unexpected character in JSON")
        }
    }

    mutating func parseObject(depth: Int, collect: Bool) throws(JSONScanError) -> [JSONObjectScan.Member] {
        guard depth <= JSONObjectScan.maximumDepth else { throw fail("JSON nested too deeply") }
        index += 1  // {
        var members: [JSONObjectScan.Member] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return members
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let start = index
            let key = try parseString(decode: collect)
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
            index += 1
            skipWhitespace()
            let valueStart = index
            let kind = try parseValue(depth: depth)
            if collect, let key {
                members.append(.init(key: key, range: start..<index, valueRange: valueStart..<index, kind: kind))
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return members
            default: throw fail("expected ',' or '}' in an object")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONScanError) {
        guard depth <= JSONObjectScan.maximumDepth else { throw fail("JSON nested too deeply") }
        index += 1  // [
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            _ = try parseValue(depth: depth)
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return
            default: throw fail("expected ',' or ']' in an array")
            }
        }
    }

    /// Parses a string at `index` (its opening quote); returns its decoded value when `decode`.
    mutating func parseString(decode: Bool) throws(JSONScanError) -> String? {
        index += 1  // opening quote
        let start = index
        var decoded: [UInt8] = []
        var runStart = index
        while true {
            skipPlainStringBytes()
            guard index < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                defer { index += 1 }
                guard decode else { return nil }
                // Without escapes (the usual case) the string is its bytes, decoded in one go.
                if runStart == start { return String(decoding: bytes[start..<index], as: UTF8.self) }
                decoded.append(contentsOf: bytes[runStart..<index])
                return String(decoding: decoded, as: UTF8.self)
            case UInt8(ascii: "\\"):
                if decode { decoded.append(contentsOf: bytes[runStart..<index]) }
                let scalar = try parseEscape()
                if decode { decoded.append(contentsOf: String(scalar).utf8) }
                runStart = index
            case 0..<0x20:
                throw fail("control character in a string")
            case 0..<0x80:
                index += 1
            default:
                try skipUTF8Sequence()
            }
        }
    }

    /// Skips the bytes from `index` that the string loop would take one by one as plain ASCII
    /// (0x20...0x7F except the quote and the backslash), a word of eight at a time, so a long
    /// string costs a few operations per word. It stops at the first word holding anything else
    /// (or fewer than eight bytes before the end), which the loop then reads byte by byte; so it
    /// accepts and refuses exactly what the loop alone would.
    mutating func skipPlainStringBytes() {
        guard let base = bytes.baseAddress else { return }
        func word(_ offset: Int) -> UInt64 { UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self) }
        // Two words at a time while both are plain, then the last plain word alone.
        while index + 16 <= bytes.count, Self.specialBytes(word(index)) | Self.specialBytes(word(index + 8)) == 0 {
            index += 16
        }
        while index + 8 <= bytes.count, Self.specialBytes(word(index)) == 0 {
            index += 8
        }
    }

    /// Nonzero exactly when some byte of `word` is non-ASCII, below 0x20, a quote (0x22) or a
    /// backslash (0x5C). Each term sets a byte's high bit where that byte matches; a borrow can
    /// only mark bytes above a true match, so no high bit set means no byte matches.
    static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let nonASCII = word
        let control = (word &- ones &* 0x20) & ~word
        let special = nonASCII | control | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)
        return special & (ones &* 0x80)
    }

    /// Parses one escape sequence at `index` (its backslash) and returns the character it stands for.
    mutating func parseEscape() throws(JSONScanError) -> Unicode.Scalar {
        index += 1  // backslash
        guard let byte = peek() else { throw fail("unterminated escape") }
        index += 1
        let simple: Unicode.Scalar?
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): simple = Unicode.Scalar(byte)
        case UInt8(ascii: "b"): simple = "\u{08}"
        case UInt8(ascii: "f"): simple = "\u{0C}"
        case UInt8(ascii: "n"): simple = "\n"
        case UInt8(ascii: "r"): simple = "\r"
        case UInt8(ascii: "t"): simple = "\t"
        case UInt8(ascii: "u"): simple = nil
        default: throw fail("invalid escape in a string")
        }
        if let simple { return simple }
        let start = index - 2
        let scalar = try parseHex4()
        // RFC 8259 lets a string hold an unpaired surrogate, but no parser agrees on what it means:
        // Ruby's json 2.6 raises on a high one near the string's end, turns one followed by
        // another escape into a different character (`\ud800\u0041` is U+10041), replaces one
        // followed by text with "?" and swallows a character, and makes a lone low one into bytes
        // that are not UTF-8, which Sidekiq cannot write back (JSON.generate raises). Refused.
        switch scalar {
        case 0xDC00..<0xE000:
            throw JSONScanError(message: "unpaired surrogate in a \\u escape", offset: start)
        case 0xD800..<0xDC00:
            guard peek() == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u")
            else { throw JSONScanError(message: "unpaired surrogate in a \\u escape", offset: start) }
            index += 2
            let low = try parseHex4()
            guard (0xDC00..<0xE000).contains(low) else {
                throw JSONScanError(message: "unpaired surrogate in a \\u escape", offset: start)
            }
            return Unicode.Scalar(0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00))!
        default:
            return Unicode.Scalar(scalar)!
        }
    }

    mutating func parseHex4() throws(JSONScanError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// Validates one multi-byte UTF-8 sequence (no overlongs, no surrogates, at most U+10FFFF).
    mutating func skipUTF8Sequence() throws(JSONScanError) {
        let lead = bytes[index]
        let length: Int
        var lowest: UInt8 = 0x80
        var highest: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lowest = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; highest = 0x9F
        case 0xF0: length = 4; lowest = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; highest = 0x8F
        default: throw fail("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw fail("invalid UTF-8") }
        let second = bytes[index + 1]
        guard second >= lowest, second <= highest else { throw fail("invalid UTF-8") }
        for offset in 2..<max(length, 2) where bytes[index + offset] & 0xC0 != 0x80 {
            throw fail("invalid UTF-8")
        }
        index += length
    }

    mutating func parseNumber() throws(JSONScanError) {
        if peek() == UInt8(ascii: "-") { index += 1 }
        switch peek() ?? 0 {
        case UInt8(ascii: "0"): index += 1
        case UInt8(ascii: "1")...UInt8(ascii: "9"): skipDigits()
        default: throw fail("invalid number")
        }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard isDigit(peek()) else { throw fail("invalid number") }
            skipDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard isDigit(peek()) else { throw fail("invalid number") }
            skipDigits()
        }
    }

    mutating func expectLiteral(_ literal: String) throws(JSONScanError) {
        let expected = literal.utf8
        guard index + expected.count <= bytes.count, expected.elementsEqual(bytes[index..<index + expected.count]) else {
            throw fail("invalid literal")
        }
        index += expected.count
    }

    // MARK: helpers

    func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    func isDigit(_ byte: UInt8?) -> Bool {
        guard let byte else { return false }
        return byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    mutating func skipDigits() {
        while isDigit(peek()) { index += 1 }
    }

    mutating func skipWhitespace() {
        while let byte = peek(),
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
                || byte == UInt8(ascii: "\t")
        {
            index += 1
        }
    }

    func fail(_ message: String) -> JSONScanError {
        JSONScanError(message: message, offset: index)
    }
}
