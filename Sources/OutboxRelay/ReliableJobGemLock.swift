/// The advisory lock sidekiq-reliable_job's own enqueuer takes through the with_advisory_lock
/// gem, for the name `sidekiq_reliable_job`: the pair `(crc32(name) & 0x7fffffff,
/// WITH_ADVISORY_LOCK_PREFIX.to_i & 0x7fffffff)`, taken by the gem with
/// `pg_try_advisory_xact_lock(int, int)` for each of its polls. The relay holds the same pair as
/// a session lock for as long as it holds the layout's lease, so the two never relay the same
/// rows: while the relay has it, the gem's enqueuer skips its poll; while the gem has it, the
/// relay skips the table as if another instance leased it.
public struct ReliableJobGemLock: Sendable, Equatable {
    public static let name = "sidekiq_reliable_job"
    public let key1: Int32
    public let key2: Int32

    /// `prefix` is the value of `WITH_ADVISORY_LOCK_PREFIX` in the gem's environment (nil: unset).
    public init(prefix: String?) {
        key1 = Int32(truncatingIfNeeded: Int64(Self.crc32(Array(Self.name.utf8))) & 0x7fff_ffff)
        key2 = Int32(truncatingIfNeeded: Self.rubyToI(prefix ?? "") & 0x7fff_ffff)
    }

    public var tryLock: SQLStatement {
        SQLStatement(name: "outbox_gem_lock", "SELECT pg_try_advisory_lock($1::int4, $2::int4)", [String(key1), String(key2)])
    }

    public var unlock: SQLStatement {
        SQLStatement(name: "outbox_gem_unlock", "SELECT pg_advisory_unlock($1::int4, $2::int4)", [String(key1), String(key2)])
    }

    /// Zlib's CRC-32 (IEEE 802.3), as Ruby's `Zlib.crc32`.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// Ruby's `String#to_i`: leading whitespace, an optional sign, then digits (underscores between
    /// them allowed); 0 when there are none. Ruby's integers never overflow; beyond 64 bits this
    /// keeps the low bits, which is all `& 0x7fffffff` looks at.
    static func rubyToI(_ text: String) -> Int64 {
        var characters = Substring(text).drop { $0 == " " || $0 == "\t" || $0 == "\n" }
        var negative = false
        if let sign = characters.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            characters = characters.dropFirst()
        }
        var value: Int64 = 0
        var previousWasDigit = false
        for character in characters {
            if let digit = character.wholeNumberValue, character.isASCII {
                value = value &* 10 &+ Int64(digit)
                previousWasDigit = true
            } else if character == "_" && previousWasDigit {
                previousWasDigit = false
            } else {
                break
            }
        }
        return negative ? 0 &- value : value
    }
}
