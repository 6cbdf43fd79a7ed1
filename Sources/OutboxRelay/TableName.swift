/// A validated, optionally schema-qualified table name, quoted wherever it enters SQL.
public struct TableName: Sendable, Hashable, CustomStringConvertible {
    public let schema: String?
    public let name: String

    /// Accepts `table` or `schema.table`, each part a plain identifier (letters, digits, `_`,
    /// not starting with a digit, at most 63 bytes), as PostgreSQL stores unquoted names.
    public init(_ text: String) throws(ConfigurationError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(parts.count), parts.allSatisfy(TableName.isIdentifier) else {
            throw ConfigurationError(
                "invalid table name '\(text)': use letters, digits and '_' (optionally schema.table)")
        }
        self.schema = parts.count == 2 ? parts[0] : nil
        self.name = parts[parts.count - 1]
    }

    /// The name quoted for SQL text, `"schema"."table"`.
    public var quoted: String {
        [schema, name].compactMap { $0 }.map { "\"\($0)\"" }.joined(separator: ".")
    }

    /// A derived name in the same schema, for example the dead-letter table beside the outbox.
    public func sibling(suffix: String) -> TableName {
        sibling(named: String((name + suffix).utf8.prefix(63))!)
    }

    /// Another relation (table or index) in the same schema.
    public func sibling(named other: String) -> TableName {
        TableName(schema: schema, name: other)
    }

    /// The bare name quoted, without the schema, as index names are written in CREATE INDEX.
    public var quotedName: String { "\"\(name)\"" }

    public var description: String {
        [schema, name].compactMap { $0 }.joined(separator: ".")
    }

    private init(schema: String?, name: String) {
        self.schema = schema
        self.name = name
    }

    public static func isIdentifier(_ part: String) -> Bool {
        guard let first = part.utf8.first, part.utf8.count <= 63 else { return false }
        let isLetter = { (byte: UInt8) in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || byte == UInt8(ascii: "_")
        }
        let isDigit = { (byte: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
        return isLetter(first) && part.utf8.allSatisfy { isLetter($0) || isDigit($0) }
    }
}
