import Foundation
import OutboxRelay

/// Removes secrets from text before it is shown: the known passwords (from connection strings,
/// URLs and password files) with every piece of them a parser may repeat
/// (``ConnectionSecrets``), the password part of any `scheme://user:password@` URL (up to its
/// last `@`, and the whole user info of a Redis URL without a user), and the value of any
/// `password=` setting.
public struct SecretRedactor: Sendable {
    private let secrets: [String]

    public init(secrets: [String]) {
        self.secrets = Array(Set(secrets.filter { !$0.isEmpty })).sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// The redactor for a libpq connection string or URL: libpq's reading of its password, and
    /// every other reading of it.
    public init(connectionString: String) {
        self.init(secrets: [PostgresConnectionString.password(in: connectionString)].compactMap { $0 })
        self = adding(candidatesIn: connectionString)
    }

    public func adding(_ more: [String]) -> SecretRedactor {
        SecretRedactor(secrets: secrets + more)
    }

    /// Adds every password and piece of one that `url` (a URL or connection string) may hold.
    public func adding(candidatesIn url: String) -> SecretRedactor {
        adding(ConnectionSecrets.candidates(in: url))
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
        (try! NSRegularExpression(pattern: #"(?i)\b((?:rediss?|unix|redis\+unix)://)[^\s:@]+@"#), "$1***@"),
        (try! NSRegularExpression(pattern: #"://([^:/@\s]*):[^\s]*@"#), "://$1:***@"),
        (try! NSRegularExpression(pattern: #"(?i)(password\s*=\s*)('[^']*'|[^\s&]+)"#), "$1***"),
    ]
}
