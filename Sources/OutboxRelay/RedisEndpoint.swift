import Foundation

/// Where and how to reach Redis, parsed from a URL:
/// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` for TLS, or
/// `unix:///path/to/redis.sock[?db=N]` (user and password as in `unix://user:password@/path`).
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Address: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    public var tls: Bool
    public var database: Int
    public var username: String?
    public var password: String?

    public init(address: Address, tls: Bool = false, database: Int = 0, username: String? = nil, password: String? = nil) {
        self.address = address
        self.tls = tls
        self.database = database
        self.username = username
        self.password = password
    }

    public init(url: String) throws(ConfigurationError) {
        let redacted = RedisEndpoint.redact(url)
        func fail(_ why: String) -> ConfigurationError {
            ConfigurationError("invalid Redis URL '\(redacted)': \(why)")
        }
        guard let schemeEnd = url.range(of: "://") else {
            throw fail("expected redis://host:port/db, rediss://… or unix:///path")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        var rest = String(url[schemeEnd.upperBound...])
        var query: [String: String] = [:]
        if let mark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let value = parts[1].removingPercentEncoding else {
                    throw fail("query parameters must be name=value")
                }
                query[parts[0]] = value
            }
            rest = String(rest[..<mark])
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = String(rest[rest.index(after: at)...])
            let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard let user = parts[0].removingPercentEncoding,
                let secret = (parts.count == 2 ? parts[1] : "").removingPercentEncoding
            else { throw fail("bad percent-encoding in the user or password") }
            if parts.count == 2 {
                username = user.isEmpty ? nil : user
                password = secret
            } else {
                // redis://secret@host is how many clients spell a password without a user.
                password = user
            }
        }
        var database = 0
        let address: Address
        switch scheme {
        case "redis", "rediss":
            var hostPort = rest
            if let slash = rest.firstIndex(of: "/") {
                hostPort = String(rest[..<slash])
                let path = rest[rest.index(after: slash)...]
                if !path.isEmpty {
                    guard let number = Int(path), number >= 0 else { throw fail("database '\(path)' is not a number") }
                    database = number
                }
            }
            let (host, port) = try RedisEndpoint.splitHostPort(hostPort, fail: fail)
            address = .tcp(host: host, port: port)
        case "unix", "redis+unix":
            guard rest.hasPrefix("/") else { throw fail("a unix socket URL needs an absolute path, unix:///path") }
            address = .unix(path: rest)
        default:
            throw fail("unknown scheme '\(scheme)', expected redis, rediss or unix")
        }
        if let db = query["db"] {
            guard let number = Int(db), number >= 0 else { throw fail("database '\(db)' is not a number") }
            database = number
        }
        if let secret = query["password"] { password = secret }
        if let user = query["username"] ?? query["user"] { username = user }
        self.init(address: address, tls: scheme == "rediss", database: database, username: username, password: password)
    }

    private static func splitHostPort(_ text: String, fail: (String) -> ConfigurationError) throws(ConfigurationError) -> (String, Int) {
        var host = text
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("unclosed '[' in the host") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw fail("unexpected text after the host") }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw fail("the host is missing") }
        var port = 6379
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw fail("port '\(portText)' is not a number from 1 to 65535")
            }
            port = number
        }
        return (host, port)
    }

    /// The URL with any password replaced by `***`, safe to print whether or not it parses: the
    /// user info is everything up to the last `@` after `://` (a password may hold `/`, `?` or
    /// `@`), every `password=` value goes, and so does any other piece of a password that
    /// ``ConnectionSecrets`` finds.
    public static func redact(_ url: String) -> String {
        var result = url
        for secret in ConnectionSecrets.candidates(in: url) {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        guard let schemeEnd = result.range(of: "://") else { return url.contains("@") ? "***" : result }
        if let at = result[schemeEnd.upperBound...].lastIndex(of: "@") {
            let userInfo = result[schemeEnd.upperBound..<at]
            if let colon = userInfo.firstIndex(of: ":") {
                result.replaceSubrange(result.index(after: colon)..<at, with: "***")
            } else {
                result.replaceSubrange(schemeEnd.upperBound..<at, with: "***")
            }
        }
        var searchFrom = 0
        while let range = result.range(
            of: "password=", options: .caseInsensitive, range: result.index(result.startIndex, offsetBy: searchFrom)..<result.endIndex)
        {
            let end = result[range.upperBound...].firstIndex(of: "&") ?? result.endIndex
            searchFrom = result.distance(from: result.startIndex, to: range.upperBound) + 3
            result.replaceSubrange(range.upperBound..<end, with: "***")
        }
        return result
    }

    /// The endpoint without its password, for logs.
    public var description: String {
        let scheme = tls ? "rediss" : "redis"
        let user = username.map { "\($0):***@" } ?? (password == nil ? "" : "***@")
        switch address {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "\(scheme)://\(user)\(shownHost):\(port)/\(database)"
        case .unix(let path):
            return "unix://\(user)\(path)?db=\(database)"
        }
    }
}
