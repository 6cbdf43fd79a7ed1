import Foundation

/// A SQL statement as a value: text with `$n` placeholders and the parameters bound to them.
/// Values never become part of the text; identifiers are validated and quoted by ``TableName``.
public struct SQLStatement: Sendable, Equatable, CustomStringConvertible {
    /// A name under which the adapter prepares the text once per connection; `nil` runs it unprepared.
    public var name: String?
    public var sql: String
    /// Parameters in text format; `nil` is SQL NULL.
    public var parameters: [String?]

    public init(name: String? = nil, _ sql: String, _ parameters: [String?] = []) {
        self.name = name
        self.sql = sql
        self.parameters = parameters
    }

    public var description: String { sql }
}

extension Array where Element == Int64 {
    /// The ids as a PostgreSQL array literal, `{1,2,3}`, for a `$n::int8[]` parameter.
    public var postgresArrayLiteral: String {
        "{" + map(String.init).joined(separator: ",") + "}"
    }
}

extension Array where Element == String {
    /// The strings as a PostgreSQL array literal, `{"a","b \"c\""}`, for a `$n::text[]` parameter.
    /// Built byte by byte: a group's statements carry hundreds of keys, and Foundation's string
    /// replacing cost more than the rest of the statement.
    public var postgresArrayLiteral: String {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        bytes.reserveCapacity(reduce(2) { $0 + $1.utf8.count + 3 })
        for (index, element) in enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(quote)
            for byte in element.utf8 {
                if byte == quote || byte == backslash { bytes.append(backslash) }
                bytes.append(byte)
            }
            bytes.append(quote)
        }
        bytes.append(UInt8(ascii: "}"))
        return String(decoding: bytes, as: UTF8.self)
    }
}
