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

    /// One entry: a row's id and its stamp.
    struct Entry: Sendable, Equatable {
        var id: Int64
        var stamp: Int64
    }

    /// The entries in ascending id order, one per id. A batch's rows come in id order and the
    /// record is written in id order, so a sorted array needs no hashing and no sort per push.
    private var entries: [Entry]

    public init(_ stamps: [Int64: Int64] = [:]) {
        entries = stamps.map { Entry(id: $0.key, stamp: $0.value) }
        entries.sort { $0.id < $1.id }
    }

    /// Entries for these ids, whichever rows they are.
    public init(arrayLiteral ids: Int64...) {
        self.init(unsorted: ids.map { Entry(id: $0, stamp: Self.anyRow) })
    }

    /// `entries` in any order; of two with the same id, the later wins.
    private init(unsorted: [Entry]) {
        let sorted = unsorted.enumerated().sorted { $0.element.id < $1.element.id || ($0.element.id == $1.element.id && $0.offset < $1.offset) }
        entries = []
        entries.reserveCapacity(sorted.count)
        for (_, entry) in sorted {
            if entries.last?.id == entry.id { entries[entries.count - 1] = entry } else { entries.append(entry) }
        }
    }

    public var stamps: [Int64: Int64] {
        Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0.stamp) })
    }

    /// The entry of the highest id alone (none when empty).
    public var lastRow: RecordedRows {
        var last = RecordedRows()
        last.entries = Array(entries.suffix(1))
        return last
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    public var ids: Set<Int64> { Set(entries.lazy.map(\.id)) }

    /// The position of `id`, or where it would go.
    private func position(of id: Int64) -> (index: Int, found: Bool) {
        var low = 0
        var high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].id < id { low = middle + 1 } else { high = middle }
        }
        return (low, low < entries.count && entries[low].id == id)
    }

    /// Whether `row` is the very row the record names.
    public func contains(_ row: OutboxRow) -> Bool {
        let (index, found) = position(of: row.id)
        guard found else { return false }
        let stamp = entries[index].stamp
        return stamp == Self.anyRow || stamp == row.createdAtMicros
    }

    public func contains(id: Int64) -> Bool { position(of: id).found }

    public mutating func insert(_ row: OutboxRow) {
        let entry = Entry(id: row.id, stamp: row.createdAtMicros)
        // Rows usually come in id order: they are appended.
        if let last = entries.last, last.id >= row.id {
            let (index, found) = position(of: row.id)
            if found { entries[index] = entry } else { entries.insert(entry, at: index) }
        } else {
            entries.append(entry)
        }
    }

    /// Adds `other`'s entries; where both have an id, `other`'s stamp wins.
    public mutating func formUnion(_ other: RecordedRows) {
        guard !other.isEmpty else { return }
        guard let last = entries.last, last.id >= other.entries[0].id else {
            entries.append(contentsOf: other.entries)
            return
        }
        var merged: [Entry] = []
        merged.reserveCapacity(entries.count + other.count)
        var mine = 0
        var theirs = 0
        while mine < entries.count, theirs < other.entries.count {
            let a = entries[mine]
            let b = other.entries[theirs]
            if a.id < b.id {
                merged.append(a)
                mine += 1
            } else {
                merged.append(b)
                theirs += 1
                if a.id == b.id { mine += 1 }
            }
        }
        merged.append(contentsOf: entries[mine...])
        merged.append(contentsOf: other.entries[theirs...])
        entries = merged
    }

    public func union(_ other: RecordedRows) -> RecordedRows {
        var copy = self
        copy.formUnion(other)
        return copy
    }

    public mutating func remove<S: Sequence<Int64>>(ids: S) {
        guard !entries.isEmpty else { return }
        let gone = Array(ids)
        guard !gone.isEmpty else { return }
        // A batch's ids come in order: one walk along both, no hashing.
        guard zip(gone, gone.dropFirst()).allSatisfy({ $0 < $1 }) else {
            let set = Set(gone)
            entries.removeAll { set.contains($0.id) }
            return
        }
        var next = 0
        entries.removeAll { entry in
            while next < gone.count, gone[next] < entry.id { next += 1 }
            return next < gone.count && gone[next] == entry.id
        }
    }

    /// Keeps the entries whose ids satisfy `keep`.
    public mutating func keep(where keep: (Int64) -> Bool) {
        entries.removeAll { !keep($0.id) }
    }

    /// The record's text: `id@stamp` in id order, comma-separated, written digit by digit
    /// (thousands of rows per push) straight into the text's storage.
    public var text: [UInt8] {
        // At most 20 characters per number, an `@` and a comma.
        [UInt8](unsafeUninitializedCapacity: entries.count * 42) { buffer, count in
            count = 0
            for (position, entry) in entries.enumerated() {
                if position > 0 {
                    buffer[count] = UInt8(ascii: ",")
                    count += 1
                }
                Self.writeDecimal(entry.id, into: buffer, at: &count)
                if entry.stamp != Self.anyRow {
                    buffer[count] = UInt8(ascii: "@")
                    count += 1
                    Self.writeDecimal(entry.stamp, into: buffer, at: &count)
                }
            }
        }
    }

    /// Reads a record's list of rows (`id@stamp` or bare `id` entries).
    public init(parsing list: Substring) {
        var entries: [Entry] = []
        for entry in list.split(separator: ",") {
            let parts = entry.split(separator: "@", maxSplits: 1)
            guard let id = Int64(parts[0]) else { continue }
            entries.append(Entry(id: id, stamp: parts.count == 2 ? Int64(parts[1]) ?? Self.anyRow : Self.anyRow))
        }
        self.init(unsorted: entries)
    }

    /// Writes `value` in decimal at `buffer[count...]` (room for 20 characters), advancing `count`.
    static func writeDecimal(_ value: Int64, into buffer: UnsafeMutableBufferPointer<UInt8>, at count: inout Int) {
        if value < 0 {
            buffer[count] = UInt8(ascii: "-")
            count += 1
        }
        var rest = value.magnitude
        var digits = 1
        var scale: UInt64 = 10
        while digits < 20, rest >= scale {
            digits += 1
            scale = scale &* 10
        }
        var index = count + digits - 1
        repeat {
            buffer[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            index -= 1
        } while rest > 0
        count += digits
    }
}
