/// What one push writes to its lease's record (``FencedPush``), which after the push must name
/// every row Redis has and PostgreSQL may not have marked (``PushLedger``).
///
/// A page's pushes go down one pipeline, each sent before the one before it is answered. Each but
/// the first runs only if the one before it landed: it then finds the record ending with that
/// push's last row, which nothing else writes (a row is pushed once per lease, and no earlier
/// holder's record names a row this lease pushes). So a refused push stops every later one of its
/// page, which keeps the key's rows in order, and no record names a row Redis does not have.
public enum RecordWrite: Sendable, Equatable {
    /// The whole record: `earlier` (the ledger's unmarked rows, in id order), then the push's own
    /// rows, last, so that the push after it in the pipeline can tell whether it landed.
    case replace(earlier: RecordedRows, pushed: RecordedRows)
    /// Only the push's own rows, appended to the record that the push sent just before it wrote
    /// (whose rows are `after`); the push runs only if the record ends with `after`'s last row.
    case append(pushed: RecordedRows, after: RecordedRows)

    /// A record written whole, by a push that no other push follows without waiting.
    public static func whole(_ rows: RecordedRows) -> RecordWrite {
        .replace(earlier: rows, pushed: [])
    }

    /// Whether the push appends to the record instead of replacing it.
    public var appends: Bool {
        if case .append = self { true } else { false }
    }

    /// Every row the write names: for an append, only the rows it adds.
    public var rows: RecordedRows {
        switch self {
        case .replace(let earlier, let pushed): earlier.union(pushed)
        case .append(let pushed, _): pushed
        }
    }

    /// What the push stores in the record (`<fence>:<rows>`), or appends to it (`,<rows>`).
    public func value(fence: String) -> [UInt8] {
        switch self {
        case .replace(let earlier, let pushed):
            // Appended in place: the record names a thousand rows or more, on every page.
            var value = Array("\(fence):".utf8)
            value += earlier.text
            if !earlier.isEmpty, !pushed.isEmpty { value.append(UInt8(ascii: ",")) }
            value += pushed.text
            return value
        case .append(let pushed, _):
            return [UInt8(ascii: ",")] + pushed.text
        }
    }

    /// The entry the record must end with for the push to run (empty: no condition).
    public var follows: [UInt8] {
        switch self {
        case .replace: []
        case .append(_, let after): after.lastRow.text
        }
    }
}
