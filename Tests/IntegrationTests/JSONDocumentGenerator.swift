/// SplitMix64: a tiny seeded generator, so a run replays exactly from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Sidekiq job payloads, well-formed and not: each document is drawn from one of several families
/// (clean jobs, jobs with odd tokens, deep nesting, odd whole documents, byte mutations of jobs).
struct JSONDocumentGenerator {
    private var rng: SplitMix64
    /// Chance that a token is drawn from the odd pool instead of the well-formed one.
    private var oddity = 0.0

    init(seed: UInt64) {
        rng = SplitMix64(state: seed)
    }

    mutating func document(number: Int) -> [UInt8] {
        switch number % 10 {
        case 0, 1, 2:
            oddity = 0
            return job()
        case 3, 4, 5:
            oddity = pick([0.02, 0.05, 0.1])
            return job()
        case 6:
            return nested()
        case 7:
            return oddWhole()
        default:
            oddity = 0
            return mutate(job())
        }
    }

    // MARK: choices

    private mutating func chance(_ probability: Double) -> Bool {
        Double.random(in: 0..<1, using: &rng) < probability
    }

    private mutating func pick<T>(_ items: [T]) -> T {
        items.randomElement(using: &rng)!
    }

    private mutating func int(_ range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &rng)
    }

    /// A token from `good`, or with probability `oddity` from `odd`.
    private mutating func token(_ good: [[UInt8]], _ odd: [[UInt8]]) -> [UInt8] {
        chance(oddity) ? pick(odd) : pick(good)
    }

    // MARK: families

    /// `{"queue":…,"class":…,"args":[…],…}` with extra members, duplicates and odd keys.
    private mutating func job() -> [UInt8] {
        let queue = chance(0.5) ? string(of: ["default", "critical", "café", "cafe\u{301}", "q\u{1F600}"]) : string()
        let jobClass = chance(0.5) ? string(of: ["Job", "Mailer::Deliver", "HardJob"]) : string()
        var members: [([UInt8], [UInt8])] = [(key("queue"), queue), (key("class"), jobClass)]
        if chance(0.8) { members.append((key("args"), array(depth: 2))) }
        if chance(0.5) { members.append((key("jid"), string())) }
        if chance(0.3) { members.append((key("at"), number())) }
        if chance(0.3) { members.append((key("created_at"), number())) }
        for _ in 0..<int(0...3) { members.append((string(), value(depth: 2))) }
        if chance(0.2) { members.append((key(pick(["queue", "class", "jid"])), string())) }
        members.shuffle(using: &rng)
        return object(members)
    }

    /// A job whose `args` nests `depth` containers deep in all, counting the job itself.
    private mutating func nested() -> [UInt8] {
        let depth = pick([2, 50, 98, 99, 100, 101, 102, 150, 254, 255, 256, 257, 258, 300])
        var opening: [UInt8] = []
        var closing: [UInt8] = []
        for level in 2...depth {
            // `args` itself is an array; below it, arrays and objects mixed.
            if level > 2, chance(0.3) {
                opening += Array(#"{"k":"#.utf8)
                closing.insert(UInt8(ascii: "}"), at: 0)
            } else {
                opening.append(UInt8(ascii: "["))
                closing.insert(UInt8(ascii: "]"), at: 0)
            }
        }
        if opening.last == UInt8(ascii: ":") { opening += Array("1".utf8) }
        return Array(#"{"queue":"deep","class":"Job","args":"#.utf8) + opening + closing + [UInt8(ascii: "}")]
    }

    /// Whole documents that are not one object, or one with something around it.
    private mutating func oddWhole() -> [UInt8] {
        oddity = 0
        let job = job()
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let alone: [String] = ["", "   ", "[1]", #""x""#, "1", "null", "NaN", "[]", "{", "}", "{}", "{\"a\":1}"]
        let before: [[UInt8]] = [
            bom, Array("/* c */".utf8), Array(" \t\r\n".utf8), [0x0B], [0x0C], [0xC2, 0xA0], Array("[".utf8),
        ]
        let after: [[UInt8]] = [
            bom, Array("x".utf8), Array("{}".utf8), [0], Array("/**/".utf8), Array("// c".utf8), Array("// c\n".utf8),
            Array(",".utf8), Array("\n".utf8), [0xC2, 0xA0], [0x0C], Array("]".utf8), job,
        ]
        switch int(0...2) {
        case 0: return Array(pick(alone).utf8)
        case 1: return pick(before) + job
        default: return job + pick(after)
        }
    }

    /// `document` with one to three bytes flipped, inserted, deleted or duplicated.
    private mutating func mutate(_ document: [UInt8]) -> [UInt8] {
        var bytes = document
        let interesting =
            Array(#"{}[]",:\/*0123456789eE+-.tfnu "#.utf8) + [0, 0x0B, 0x0C, 0x7F, 0x80, 0xBF, 0xC0, 0xC3, 0xED, 0xEF, 0xF4, 0xFF]
        for _ in 0..<int(1...3) {
            guard !bytes.isEmpty else { break }
            let at = int(0...bytes.count - 1)
            switch int(0...3) {
            case 0: bytes[at] ^= 1 << UInt8(int(0...7))
            case 1: bytes.insert(chance(0.7) ? pick(interesting) : UInt8(int(0...255)), at: at)
            case 2: bytes.remove(at: at)
            default: bytes.insert(bytes[at], at: at)
            }
        }
        return bytes
    }

    // MARK: values

    private mutating func value(depth: Int) -> [UInt8] {
        switch int(0...(depth > 0 ? 6 : 4)) {
        case 0, 1: return string()
        case 2: return number()
        case 3: return token([Array("true".utf8), Array("false".utf8), Array("null".utf8)], odd.literals)
        case 4: return number()
        case 5: return array(depth: depth - 1)
        default:
            var members: [([UInt8], [UInt8])] = []
            for _ in 0..<int(0...3) { members.append((string(), value(depth: depth - 1))) }
            return object(members)
        }
    }

    private mutating func object(_ members: [([UInt8], [UInt8])]) -> [UInt8] {
        var out = space() + [UInt8(ascii: "{")]
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { out += token([Array(",".utf8)], [Array(",,".utf8), [], Array(";".utf8)]) }
            out += space() + key + space() + token([Array(":".utf8)], [Array("::".utf8), [], Array("=".utf8)])
            out += space() + value + space()
        }
        if !members.isEmpty, chance(oddity) { out += Array(",".utf8) }
        return out + [UInt8(ascii: "}")] + space()
    }

    private mutating func array(depth: Int) -> [UInt8] {
        var out = [UInt8(ascii: "[")] + space()
        let count = int(0...4)
        for index in 0..<count {
            if index > 0 { out += token([Array(",".utf8)], [Array(",,".utf8), []]) + space() }
            out += value(depth: depth) + space()
        }
        if count > 0, chance(oddity) { out += Array(",".utf8) }
        return out + [UInt8(ascii: "]")]
    }

    /// A key spelled plainly, or with its letters escaped (`"q\u0075eue"`), which is the same key.
    private mutating func key(_ name: String) -> [UInt8] {
        guard chance(0.2) else { return Array("\"\(name)\"".utf8) }
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in name.utf8 {
            out += chance(0.3) ? Array("\\u00\(hexByte(byte))".utf8) : [byte]
        }
        return out + [UInt8(ascii: "\"")]
    }

    private func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }

    private mutating func string(of words: [String]) -> [UInt8] {
        Array("\"\(pick(words))\"".utf8)
    }

    private mutating func string() -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for _ in 0..<int(0...4) { out += token(good.stringPieces, odd.stringPieces) }
        return out + [UInt8(ascii: "\"")]
    }

    private mutating func number() -> [UInt8] {
        token(good.numbers, odd.numbers)
    }

    private mutating func space() -> [UInt8] {
        guard chance(0.3) else { return [] }
        return token(good.spaces, odd.spaces)
    }

    private let good = Pools.good
    private let odd = Pools.odd
}

/// Tokens that RFC 8259 allows (`good`) and ones that it does not, or that Ruby takes leniently (`odd`).
private struct Pools {
    let stringPieces: [[UInt8]]
    let numbers: [[UInt8]]
    let spaces: [[UInt8]]
    let literals: [[UInt8]]

    static let good = Pools(
        stringPieces: [
            "default", "Job", "a b", "café", "cafe\u{301}", "€", "😀", "\u{7F}", "\u{2028}", #"\n"#, #"\""#, #"\\"#,
            #"\/"#, #"\b\f\r\t"#, #"\u00e9"#, #"\u00E9"#, #"\u20ac"#, #"\ud83d\ude00"#, #"\uD834\uDD1E"#,
            #"\udbff\udfff"#, #"\u0000"#, #"\u001f"#, #"\u0022"#, #"\u005c"#, #"\uffff"#, #"\ufeff"#,
        ].map { Array($0.utf8) },
        numbers: [
            "0", "-0", "1", "-1", "12.5", "1e5", "1E+2", "1e-2", "-0.0e-0", "1e400", "1E-400", "-1e400",
            "123456789012345678901234567890", "1.7976931348623157e308", "4.9e-324", "9007199254740993",
            "0.1", "1700000000.25", "2e-308",
        ].map { Array($0.utf8) },
        spaces: [" ", "\n", "\r", "\t", "  \n\t"].map { Array($0.utf8) },
        literals: [])

    static let odd = Pools(
        stringPieces: [
            #"\ud800"#, #"\udc00"#, #"\ud800\u0041"#, #"\ud800abcdefg"#, #"\udbff"#, #"\ud83d\ud83d"#,
            #"\ude00\ud83d"#, #"\x"#, #"\'"#, #"\é"#, #"\ "#, #"\u12g4"#, #"\u12"#, #"\U00e9"#, "\t", "\u{01}",
            "\u{0}", "\u{1F}",
        ].map { Array($0.utf8) } + [
            [0xFF], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xF0, 0x80, 0x80, 0xAF], [0xED, 0xA0, 0x80],
            [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xC3], [0x80],
            [0xE2, 0x82], [0x5C, 0xC3, 0xA9], [0xC3, 0x5C, 0xA9],
        ],
        numbers: [
            "01", "-01", "+1", ".5", "1.", "-", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity", "1_000",
            "1.5.5", "--1", "00", "-.5", "1e5.5", "- 1", "0.e1",
        ].map { Array($0.utf8) },
        spaces: [
            "\u{0B}", "\u{0C}", "\u{A0}", "\u{FEFF}", "\u{2028}", "\u{0}", "/* c */", "/**/", "// c\n", "//\n",
            "# c\n", "/* \\ud800 \" */",
        ].map { Array($0.utf8) },
        literals: ["True", "nul", "undefined", "truex", "NULL", "fals"].map { Array($0.utf8) })
}
