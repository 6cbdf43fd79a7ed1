import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// A Redis master, one replica and three Sentinels of the test's own on loopback, all in
/// folders under /tmp that ``destroy()`` removes (also when the test fails).
final class SentinelCluster {
    static let masterName = "mymaster"

    /// TLS everywhere (certificates of scripts/test-certs.sh), a password on the data nodes, an
    /// ACL user for the relay, and a password on the Sentinels.
    struct Security {
        let certificates: String
        let password: String
        let user: String
        let userPassword: String
        let sentinelPassword: String

        var tls: RedisTLS {
            RedisTLS(caFile: "\(certificates)/ca.crt", certificateFile: "\(certificates)/client.crt", keyFile: "\(certificates)/client.key")
        }

        var serverTLS: [String] {
            [
                "--tls-cert-file", "\(certificates)/server.crt", "--tls-key-file", "\(certificates)/server.key",
                "--tls-ca-cert-file", "\(certificates)/ca.crt", "--tls-replication", "yes",
            ]
        }
    }

    /// The two data nodes; which is the master changes with each failover.
    let nodes: [PrivateRedis]
    let sentinelPorts: [Int]
    let security: Security?
    private var sentinels: [Process] = []
    private let directory: String

    init(security: Security? = nil) throws {
        self.security = security
        var arguments: [String] = []
        if let security {
            arguments = ["--port", "0", "--tls-port", "PORT"] + security.serverTLS + [
                "--requirepass", security.password, "--masterauth", security.password,
                "--user", security.user, "on", ">\(security.userPassword)", "~*", "&*", "+@all",
            ]
        }
        let first = try PrivateRedis(extraArguments: arguments, password: security?.password, tls: security?.tls)
        nodes = [
            first,
            try PrivateRedis(
                extraArguments: arguments + ["--replicaof", "127.0.0.1", String(first.port)], password: security?.password, tls: security?.tls),
        ]
        sentinelPorts = (0..<3).map { _ in freePort() }
        directory = "/tmp/outbox-relay-sentinels-\(getpid())-\(sentinelPorts[0])"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for port in sentinelPorts {
                let config = "\(directory)/sentinel-\(port).conf"
                var lines = ["port \(port)", "bind 127.0.0.1", "dir \(directory)", "logfile \(directory)/sentinel-\(port).log"]
                if let security {
                    lines = ["port 0", "tls-port \(port)", "bind 127.0.0.1", "dir \(directory)"]
                        + stride(from: 0, to: security.serverTLS.count, by: 2).map {
                            "\(security.serverTLS[$0].dropFirst(2)) \(security.serverTLS[$0 + 1])"
                        }
                        + ["requirepass \(security.sentinelPassword)", "sentinel sentinel-pass \(security.sentinelPassword)"]
                }
                lines += [
                    "sentinel monitor \(Self.masterName) 127.0.0.1 \(first.port) 2",
                    "sentinel down-after-milliseconds \(Self.masterName) 1000",
                    "sentinel failover-timeout \(Self.masterName) 4000",
                    "sentinel parallel-syncs \(Self.masterName) 1",
                ]
                if let security { lines.append("sentinel auth-pass \(Self.masterName) \(security.password)") }
                try (lines.joined(separator: "\n") + "\n").write(toFile: config, atomically: true, encoding: .utf8)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
                process.arguments = [config, "--sentinel"]
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                sentinels.append(process)
            }
            // Ready for a failover once every Sentinel knows the replica and the two others.
            try waitUntil("Sentinels see the replica and each other", seconds: 30) {
                sentinelPorts.allSatisfy { port in
                    guard let sentinel = try? RedisConnection(endpoint: sentinel(port), timeout: 1, tls: security?.tls ?? RedisTLS()),
                        let replies = try? sentinel.send([
                            RedisCommand("SENTINEL", "replicas", Self.masterName), RedisCommand("SENTINEL", "sentinels", Self.masterName),
                        ]),
                        case .array(let replicas) = replies[0], case .array(let others) = replies[1], replicas.count == 1, others.count == 2,
                        case .array(let fields) = replicas[0]
                    else { return false }
                    let flags = zip(fields, fields.dropFirst()).first { $0.0.text == "flags" }?.1.text ?? ""
                    return flags == "slave"
                }
            }
            try waitUntilReplicaInSync()
        } catch {
            destroy()
            throw error
        }
    }

    func sentinel(_ port: Int) -> RedisEndpoint {
        RedisEndpoint(address: .tcp(host: "127.0.0.1", port: port), tls: security != nil, password: security?.sentinelPassword)
    }

    var sentinelList: String { sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") }

    /// The master's port as the Sentinels agree on it (nil while they disagree or cannot say).
    func masterPort() -> Int? {
        let ports = sentinelPorts.map { port -> Int? in
            guard let sentinel = try? RedisConnection(endpoint: sentinel(port), timeout: 1, tls: security?.tls ?? RedisTLS()),
                case .array(let parts)? = try? sentinel.send([RedisCommand("SENTINEL", "get-master-addr-by-name", Self.masterName)])[0],
                parts.count == 2
            else { return nil }
            return parts[1].text.flatMap(Int.init)
        }
        guard let first = ports.first, ports.allSatisfy({ $0 == first }) else { return nil }
        return first
    }

    var master: PrivateRedis { nodes.first { $0.port == masterPort() }! }
    var replica: PrivateRedis { nodes.first { $0.port != masterPort() }! }

    func connection(_ node: PrivateRedis) throws -> RedisConnection {
        try RedisConnection(endpoint: node.adminEndpoint, timeout: 2, tls: node.tls)
    }

    /// `ROLE`'s first word on a node, or nil when it does not answer.
    func role(_ node: PrivateRedis) -> String? {
        guard case .array(let parts)? = try? connection(node).send([RedisCommand("ROLE")])[0] else { return nil }
        return parts.first?.text
    }

    /// `SENTINEL FAILOVER`: a planned failover, the master demoted and its clients cut.
    func failOver() throws {
        _ = try RedisConnection(endpoint: sentinel(sentinelPorts[0]), timeout: 2, tls: security?.tls ?? RedisTLS())
            .send([RedisCommand("SENTINEL", "FAILOVER", Self.masterName)])
    }

    /// Cuts the replica off the master for as long as the test likes: the replica cannot
    /// authenticate to resync (a wrong `masterauth`), so the master's writes from now on exist
    /// only on the master. Returns what undoes it.
    func cutReplication() throws -> () throws -> Void {
        let replica = self.replica
        _ = try connection(replica).send([RedisCommand("CONFIG", "SET", "masterauth", "not-the-password")])
        _ = try connection(master).send([RedisCommand("CLIENT", "KILL", "TYPE", "replica")])
        return { _ = try self.connection(replica).send([RedisCommand("CONFIG", "SET", "masterauth", "")]) }
    }

    /// Waits until the Sentinels name a master other than `old`, and it says it is the master.
    func waitForFailover(from old: Int, seconds: Double = 60) throws {
        try waitUntil("the Sentinels promote the replica", seconds: seconds) {
            guard let port = masterPort(), port != old else { return false }
            return role(nodes.first { $0.port == port }!) == "master"
        }
    }

    /// Waits until the non-master node replicates the master with its link up and offsets equal.
    func waitUntilReplicaInSync(seconds: Double = 60) throws {
        try waitUntil("the replica in sync with the master", seconds: seconds) {
            guard masterPort() != nil, case .bulk(let info)? = try? connection(replica).send([RedisCommand("INFO", "replication")])[0] else {
                return false
            }
            let text = String(decoding: info, as: UTF8.self)
            guard text.contains("role:slave"), text.contains("master_link_status:up"), text.contains("master_port:\(master.port)") else {
                return false
            }
            guard case .integer(let acknowledged)? = try? connection(master).send([RedisCommand("WAIT", "1", "100")])[0] else { return false }
            return acknowledged >= 1
        }
    }

    /// What the data nodes and the Sentinels logged, for a failure's report.
    func logs(lines: Int = 60) -> String {
        var parts = nodes.map { "--- Redis \($0.port):\n\($0.logTail(lines))" }
        for port in sentinelPorts {
            let text = (try? String(contentsOfFile: "\(directory)/sentinel-\(port).log", encoding: .utf8)) ?? ""
            parts.append("--- Sentinel \(port):\n" + text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n"))
        }
        return parts.joined(separator: "\n")
    }

    /// Starts a data node that was killed: it comes back empty (no persistence), so, as Redis's
    /// documentation requires of such a node, it may never be promoted (`replica-priority 0`).
    /// Otherwise a Sentinel that loses sight of the master for a moment (a loaded machine) could
    /// promote the empty node and have the master resynchronise from it: every job gone, whatever
    /// the relay did (seen once under a full test run).
    func restartEmpty(_ node: PrivateRedis) throws {
        try node.start(extraArguments: ["--replica-priority", "0"])
    }

    func destroy() {
        for process in sentinels where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        sentinels = []
        for node in nodes { node.destroy() }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
