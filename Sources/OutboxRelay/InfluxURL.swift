/// Where `--metrics-url` sends res_outbox's InfluxDB points, parsed as res_outbox's influxdb client
/// reads the URL: `http(s)://[user:password@]host[:port]/database` (InfluxDB 1.x's `/write`,
/// line protocol; the user and password may also come as `?username=…&password=…`) or
/// `udp://host[:port]` (InfluxDB's UDP listener, whose configuration names the database).
public struct InfluxURL: Sendable, Equatable, CustomStringConvertible {
    public enum Transport: String, Sendable, Equatable {
        case http, https, udp
    }

    public var transport: Transport
    public var host: String
    public var port: Int
    /// The database written to; nil only for UDP.
    public var database: String?
    public var username: String?
    public var password: String?

    /// influxdb-ruby's default ports: 8086 over HTTP, 4444 over UDP.
    public static let defaultHTTPPort = 8086
    public static let defaultUDPPort = 4444

    public init(_ url: String) throws(ConfigurationError) {
        let redacted = RedisEndpoint.redact(url)
        func fail(_ why: String) -> ConfigurationError {
            ConfigurationError("invalid metrics URL '\(redacted)': \(why)")
        }
        guard let schemeEnd = url.range(of: "://") else {
            throw fail("expected http(s)://host:port/database (a user and password may come before the host) or udp://host:port")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard let transport = Transport(rawValue: scheme) else {
            throw fail("unknown scheme '\(scheme)', expected http, https or udp")
        }
        var rest = Substring(url[schemeEnd.upperBound...])
        var query: [String: String] = [:]
        if let mark = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: mark)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let value = parts[1].removingPercentEncodingInURL else {
                    throw fail("query parameters must be name=value")
                }
                query[parts[0]] = value
            }
            rest = rest[..<mark]
        }
        var path = Substring("")
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let parts = rest[..<at].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = String(parts[0]).removingPercentEncodingInURL,
                let secret = (parts.count == 2 ? String(parts[1]) : "").removingPercentEncodingInURL
            else { throw fail("bad percent-encoding in the user or password") }
            username = user.isEmpty ? nil : user
            password = parts.count == 2 ? secret : nil
            rest = rest[rest.index(after: at)...]
        } else {
            username = nil
            password = nil
        }
        if let user = query["username"] ?? query["u"] { username = user }
        if let secret = query["password"] ?? query["p"] { password = secret }

        var host = String(rest)
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw fail("unclosed '[' in the host") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw fail("unexpected text after the host") }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty else { throw fail("the host is missing") }
        var port = transport == .udp ? Self.defaultUDPPort : Self.defaultHTTPPort
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw fail("port '\(portText)' is not a number from 1 to 65535")
            }
            port = number
        }
        let database = String(path).removingPercentEncodingInURL ?? ""
        if transport == .udp {
            guard database.isEmpty else { throw fail("a UDP URL names no database (InfluxDB's [[udp]] section does)") }
            guard username == nil, password == nil else { throw fail("a UDP URL takes no user or password") }
        } else {
            guard !database.isEmpty else { throw fail("the database is missing, as in http://host:8086/database") }
            guard !database.contains("/") else { throw fail("the database '\(database)' contains '/'") }
        }
        self.transport = transport
        self.host = host
        self.port = port
        self.database = transport == .udp ? nil : database
    }

    /// The URL without its password, safe to log.
    public var description: String {
        let user = username.map { password == nil ? "\($0)@" : "\($0):***@" } ?? (password == nil ? "" : ":***@")
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(transport.rawValue)://\(user)\(shownHost):\(port)" + (database.map { "/\($0)" } ?? "")
    }
}

extension String {
    /// Percent-decoding without Foundation, so the core stays plain Swift: nil on a bad escape.
    fileprivate var removingPercentEncodingInURL: String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
