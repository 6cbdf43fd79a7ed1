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
}
