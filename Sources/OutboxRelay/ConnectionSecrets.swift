import Foundation

/// Everything in a connection URL or libpq connection string that may be a password, or a piece
/// of one, found without trusting any one parser. A password with an unencoded `@`, `/`, `?`,
/// `#` or `%` is read differently by libpq, by ``RedisEndpoint`` and by a regular expression, and
/// each of their error messages may repeat a different piece of it (libpq: `could not translate
/// host name "SecretHalf@db"`), so redaction removes every reading:
/// - the user info up to the first `@` and up to the last `@` after `://` (what follows the first
///   `:` in it; for Redis URLs without a `:` the whole user info, as `redis://secret@host`; and
///   the whole of it, user name too, when it holds an `@` itself);
/// - the value of every `password=` setting or query parameter, and in a `key=value` string the
///   words after it that are not settings (`password=two words` leaves `words` behind);
/// - each of these raw and percent-decoded, and their pieces between `@`, `/`, `?`, `#`, `:` and
///   `&` that are at least ``shortestPiece`` characters long.
public enum ConnectionSecrets {
    /// Shorter pieces are not removed on their own, or every `a` or `db` in a message would go;
    /// a whole password is, whatever its length.
    public static let shortestPiece = 3

    /// The candidates in `text`, longest first.
    public static func candidates(in text: String) -> [String] {
        var passwords = userInfoPasswords(in: text) + settingValues(in: text)
        passwords.removeAll { $0.isEmpty }
        var found = Set<String>()
        for password in passwords {
            for form in [password, password.removingPercentEncoding].compactMap({ $0 }) where !form.isEmpty {
                found.insert(form)
                for piece in form.split(whereSeparator: { "@/?#:&".contains($0) }) where piece.count >= shortestPiece {
                    found.insert(String(piece))
                }
            }
        }
        return found.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    private static func userInfoPasswords(in text: String) -> [String] {
        guard let schemeEnd = text.range(of: "://") else { return [] }
        // The scheme is the word before `://`, also in `--database-url=postgresql://…`.
        let scheme = text[..<schemeEnd.lowerBound].reversed().prefix { $0.isLetter || $0.isNumber || "+.-".contains($0) }.reversed()
            .map(String.init).joined().lowercased()
        let rest = text[schemeEnd.upperBound...]
        var passwords: [String] = []
        for at in Set([rest.firstIndex(of: "@"), rest.lastIndex(of: "@")].compactMap { $0 }) {
            let userInfo = rest[..<at]
            // With an `@` inside, no reading of user and password can be trusted: all of it goes.
            if userInfo.contains("@") { passwords.append(String(userInfo)) }
            if let colon = userInfo.firstIndex(of: ":") {
                passwords.append(String(userInfo[userInfo.index(after: colon)...]))
            } else if !scheme.hasPrefix("postgres") {
                passwords.append(String(userInfo))
            }
        }
        return passwords
    }

    private static let setting = try! NSRegularExpression(pattern: #"(?i)password\s*=\s*('((?:[^'\\]|\\.)*)'|[^\s&]*)"#)

    private static func settingValues(in text: String) -> [String] {
        var values: [String] = []
        let whole = NSRange(text.startIndex..., in: text)
        for match in setting.matches(in: text, range: whole) {
            let quoted = Range(match.range(at: 2), in: text)
            guard let value = quoted ?? Range(match.range(at: 1), in: text), let end = Range(match.range, in: text)?.upperBound else { continue }
            values.append(String(text[value]))
            // libpq stops an unquoted value at a space; what follows, up to the next setting, is
            // more of the password as the user meant it.
            if quoted == nil, !text.contains("://") {
                let words = text[end...].split(whereSeparator: \.isWhitespace).prefix { !$0.contains("=") }
                values += words.map(String.init)
            }
        }
        return values
    }
}
