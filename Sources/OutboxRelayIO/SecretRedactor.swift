import Foundation

/// Removes secrets from text before it is shown: the known passwords (from connection strings,
/// URLs and password files), the password part of any `scheme://user:password@` URL, and the value
/// of any `password=` setting.
public struct SecretRedactor: Sendable {
    private let secrets: [String]

    public init(secrets: [String]) {
        self.secrets = secrets.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    /// The redactor for a libpq connection string's password.
    public init(connectionString: String) {
        self.init(secrets: [PostgresConnection.password(in: connectionString)].compactMap { $0 })
    }

    public func adding(_ more: [String]) -> SecretRedactor {
        SecretRedactor(secrets: secrets + more)
    }

    public func redact(_ text: String) -> String {
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        for (pattern, template) in Self.patterns {
            result = pattern.stringByReplacingMatches(
                in: result, range: NSRange(result.startIndex..., in: result), withTemplate: template)
        }
        return result
    }

    private static let patterns: [(NSRegularExpression, String)] = [
        (try! NSRegularExpression(pattern: #"://([^:/@\s]*):[^@\s]*@"#), "://$1:***@"),
        (try! NSRegularExpression(pattern: #"(?i)(password\s*=\s*)('[^']*'|[^\s&]+)"#), "$1***"),
    ]
}
