import OutboxRelay

/// Finds the Redis master through Sentinel: asks the Sentinels in turn (`SENTINEL
/// get-master-addr-by-name`), starting one further on each time, so a Sentinel that is down or
/// partitioned is passed over; then the master's address replaces the URL's host (the master's
/// name). TLS settings, user, password and database are the URL's; the Sentinels get the
/// Sentinel password and the same TLS settings.
///
/// Not thread-safe: the relay's loop owns it.
public final class RedisSentinel {
    private let sentinels: [RedisEndpoint.Address]
    private let password: String?
    private let tls: Bool
    private var next = 0

    public init(sentinels: [RedisEndpoint.Address], password: String?, tls: Bool) {
        precondition(!sentinels.isEmpty, "Sentinel needs at least one address")
        self.sentinels = sentinels
        self.password = password
        self.tls = tls
    }

    /// The endpoint of the master named by `template`'s host, as the first Sentinel that answers
    /// knows it. Throws `.connectionFailed` naming each Sentinel's answer when none knows it.
    public func master(of template: RedisEndpoint, timeout: Double, tlsSettings: RedisTLS) throws(RedisError) -> RedisEndpoint {
        guard case .tcp(let name, _) = template.address else {
            throw RedisError(.connectionFailed, "with Sentinel the Redis URL's host is the master's name, not a unix socket")
        }
        var answers: [String] = []
        for offset in 0..<sentinels.count {
            let address = sentinels[(next + offset) % sentinels.count]
            let sentinel = RedisEndpoint(address: address, tls: tls, password: password)
            do {
                let connection = try RedisConnection(endpoint: sentinel, timeout: timeout, tls: tlsSettings)
                let reply = try connection.send([RedisCommand("SENTINEL", "get-master-addr-by-name", name)])[0]
                guard case .array(let parts) = reply, parts.count == 2, let host = parts[0].text, let port = parts[1].text.flatMap(Int.init) else {
                    answers.append("\(sentinel): \(reply == .null ? "knows no master named '\(name)'" : "\(reply)")")
                    continue
                }
                next = (next + offset + 1) % sentinels.count
                var master = template
                master.address = .tcp(host: host, port: port)
                return master
            } catch {
                answers.append(error.message)
            }
        }
        next = (next + 1) % sentinels.count
        throw RedisError(.connectionFailed, "no Sentinel named the master '\(name)': \(answers.joined(separator: "; "))")
    }
}
