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
    public var postgresArrayLiteral: String {
        "{" + map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }
}
