/// The value of an outbox row's `split_key` column. The column is nullable, and rows whose key is
/// NULL form a key of their own; it cannot be named on the command line but is served by discovery.
public enum SplitKey: Sendable, Hashable, CustomStringConvertible {
    case named(String)
    case null

    public init(_ value: String?) {
        self = value.map(SplitKey.named) ?? .null
    }

    /// The column value, `nil` for NULL.
    public var value: String? {
        if case .named(let name) = self { return name }
        return nil
    }

    public var description: String { value ?? "(null)" }

    /// Keys are bytes, as PostgreSQL compares them: `café` in NFC and in NFD are two keys (Swift's
    /// `String` equality would make them one).
    public static func == (lhs: SplitKey, rhs: SplitKey) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.named(let a), .named(let b)): return a.utf8.elementsEqual(b.utf8)
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .named(let name):
            hasher.combine(1 as UInt8)
            hasher.combine(name.utf8.count)
            for byte in name.utf8 { hasher.combine(byte) }
        }
    }
}

extension SplitKey {
    /// Whether a wake-up of `migrate --notify`'s trigger may be for this key: its payload lists
    /// the split keys written, comma-separated (NULL as an empty name), or is empty when they did
    /// not fit. Names are compared as bytes; a key with a comma in it cannot be told apart.
    public func mayBeNamed(inWakeUp payload: String) -> Bool {
        let own = value ?? ""
        if payload.isEmpty || own.utf8.contains(UInt8(ascii: ",")) { return true }
        return payload.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).contains { $0.elementsEqual(own.utf8) }
    }
}
