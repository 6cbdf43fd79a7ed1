/// Rows a fence's record names as pushed to Redis and perhaps not marked: each id with a stamp of
/// the row it was, its `created_at` (``OutboxRow/createdAtMicros``). A database restored from a
/// backup, or a standby promoted without the latest sequence values, can give an id to another
/// row; the stamp keeps that row from being marked as already pushed (it is pushed instead).
///
/// In the record the rows are written `id@stamp`, comma-separated; an entry without a stamp
/// (written by a relay from before stamps) stands for whichever row has the id.
public struct RecordedRows: Sendable, Equatable, ExpressibleByArrayLiteral {
    /// The stamp of an entry without one: any row with the id.
    public static let anyRow = Int64.min

    public private(set) var stamps: [Int64: Int64]

    public init(_ stamps: [Int64: Int64] = [:]) {
        self.stamps = stamps
    }

    /// Entries for these ids, whichever rows they are.
    public init(arrayLiteral ids: Int64...) {
        stamps = Dictionary(ids.map { ($0, Self.anyRow) }, uniquingKeysWith: { $1 })
    }

    public var isEmpty: Bool { stamps.isEmpty }
    public var count: Int { stamps.count }
    public var ids: Set<Int64> { Set(stamps.keys) }

    /// Whether `row` is the very row the record names.
    public func contains(_ row: OutboxRow) -> Bool {
        guard let stamp = stamps[row.id] else { return false }
        return stamp == Self.anyRow || stamp == row.createdAtMicros
    }

    public func contains(id: Int64) -> Bool { stamps[id] != nil }

    public mutating func insert(_ row: OutboxRow) {
        stamps[row.id] = row.createdAtMicros
    }

    public mutating func formUnion(_ other: RecordedRows) {
        stamps.merge(other.stamps) { $1 }
    }

    public func union(_ other: RecordedRows) -> RecordedRows {
        var copy = self
        copy.formUnion(other)
        return copy
    }

    public mutating func remove<S: Sequence<Int64>>(ids: S) {
        for id in ids { stamps[id] = nil }
    }

    /// Keeps the entries whose ids satisfy `keep`.
    public mutating func keep(where keep: (Int64) -> Bool) {
        stamps = stamps.filter { keep($0.key) }
    }

    /// The record's text: `id@stamp` in id order, comma-separated, written digit by digit
    /// (thousands of rows per push).
    public var text: [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(stamps.count * 24)
        // The entries are sorted whole, so no stamp is looked up again by its id.
        var entries = Array(stamps)
        entries.sort { $0.key < $1.key }
        for (position, (id, stamp)) in entries.enumerated() {
            if position > 0 { text.append(UInt8(ascii: ",")) }
            Self.appendDecimal(id, to: &text)
            if stamp != Self.anyRow {
                text.append(UInt8(ascii: "@"))
                Self.appendDecimal(stamp, to: &text)
            }
        }
        return text
    }

    /// Reads a record's list of rows (`id@stamp` or bare `id` entries).
    public init(parsing list: Substring) {
        var stamps: [Int64: Int64] = [:]
        for entry in list.split(separator: ",") {
            let parts = entry.split(separator: "@", maxSplits: 1)
            guard let id = Int64(parts[0]) else { continue }
            stamps[id] = parts.count == 2 ? Int64(parts[1]) ?? Self.anyRow : Self.anyRow
        }
        self.stamps = stamps
    }

    static func appendDecimal(_ value: Int64, to text: inout [UInt8]) {
        if value < 0 { text.append(UInt8(ascii: "-")) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var rest = value.magnitude
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            for index in stride(from: count - 1, through: 0, by: -1) { text.append(buffer[index]) }
        }
    }
}
