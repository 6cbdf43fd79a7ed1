/// How the relay follows a highly available Redis: where the Sentinels are (the Redis URL's host
/// is then the master's name, as in Sidekiq's and redis-client's Sentinel configuration) and how
/// many replicas must acknowledge each claim and push (`WAIT`) before the relay acts on it.
public struct RedisReplication: Sendable, Equatable {
    /// `host:port` of each Sentinel, asked in turn; empty without Sentinel.
    public var sentinels: [RedisEndpoint.Address]
    /// The Sentinels' own password (`requirepass` of the Sentinels), if they need one.
    public var sentinelPassword: String?
    /// Replicas that must acknowledge a claim or push before it counts (0: no `WAIT`).
    public var waitReplicas: Int
    /// Seconds a `WAIT` may take before the write counts as unconfirmed.
    public var waitTimeout: Double

    public init(sentinels: [RedisEndpoint.Address] = [], sentinelPassword: String? = nil, waitReplicas: Int = 0, waitTimeout: Double = 1) {
        self.sentinels = sentinels
        self.sentinelPassword = sentinelPassword
        self.waitReplicas = waitReplicas
        self.waitTimeout = waitTimeout
    }

    /// `host:port[,host:port…]` (IPv6 hosts in brackets); the port defaults to Sentinel's 26379.
    public static func parseSentinels(_ text: String) throws(ConfigurationError) -> [RedisEndpoint.Address] {
        var addresses: [RedisEndpoint.Address] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            var host = item
            var port = 26379
            if item.hasPrefix("["), let close = item.firstIndex(of: "]") {
                host = String(item[item.index(after: item.startIndex)..<close])
                let after = item[item.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let number = Int(after.dropFirst()), (1...65535).contains(number) else {
                        throw ConfigurationError("Sentinel '\(item)': the port is not a number from 1 to 65535")
                    }
                    port = number
                }
            } else if let colon = item.lastIndex(of: ":") {
                host = String(item[..<colon])
                guard let number = Int(item[item.index(after: colon)...]), (1...65535).contains(number) else {
                    throw ConfigurationError("Sentinel '\(item)': the port is not a number from 1 to 65535")
                }
                port = number
            }
            guard !host.isEmpty else { throw ConfigurationError("Sentinel '\(item)': the host is missing") }
            addresses.append(.tcp(host: host, port: port))
        }
        guard !addresses.isEmpty else { throw ConfigurationError("no Sentinel given (expected host:port[,host:port…])") }
        return addresses
    }
}
