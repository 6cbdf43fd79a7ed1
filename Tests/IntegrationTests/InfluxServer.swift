import Foundation
import Testing

/// A throwaway InfluxDB 1.x (Debian's `influxdb` package, which `make test` installs) for one test:
/// its own data folder, a generated configuration, HTTP with authentication on and a UDP listener,
/// on loopback ports below 32768; ``stop()`` (or deinit) ends it and removes the folder.
final class InfluxServer: @unchecked Sendable {
    static let user = "outbox_admin"
    static let password = "influx-s3cret-pw"
    static let udpDatabase = "udp_metrics"

    let httpPort: Int
    let udpPort: Int
    private let folder: URL
    private var process: Process?

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/influxd") else {
            Issue.record("influxd is missing: run the tests with 'make test', which installs Debian's influxdb package")
            throw TestSetupError.serversMissing
        }
        folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("outbox-relay-influx-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        httpPort = freePort()
        udpPort = freePort(excluding: [httpPort])
    }

    deinit { stop() }

    var url: String { "http://\(Self.user):\(Self.password)@127.0.0.1:\(httpPort)" }

    /// Starts influxd (again, on the same ports and data), waits for /ping, and on the first start
    /// creates the admin user and `databases`.
    func start(databases: [String] = []) throws {
        let rpcPort = freePort(excluding: [httpPort, udpPort])
        let configuration = """
            reporting-disabled = true
            bind-address = "127.0.0.1:\(rpcPort)"
            [meta]
              dir = "\(folder.path)/meta"
              logging-enabled = false
            [data]
              dir = "\(folder.path)/data"
              wal-dir = "\(folder.path)/wal"
              query-log-enabled = false
            [monitor]
              store-enabled = false
            [continuous_queries]
              enabled = false
            [http]
              bind-address = "127.0.0.1:\(httpPort)"
              auth-enabled = true
              log-enabled = false
            [[udp]]
              enabled = true
              bind-address = "127.0.0.1:\(udpPort)"
              database = "\(Self.udpDatabase)"
              batch-size = 1
              batch-timeout = "50ms"

            """
        let file = folder.appendingPathComponent("influxdb.conf")
        try configuration.write(to: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", Self.guardian, "sh", "/usr/bin/influxd", file.path, folder.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitUntil("influxd answers /ping", seconds: 30) { (try? request("GET", "/ping", authenticated: false).0) == 204 }
        // With authentication on, InfluxDB takes this without credentials only while it has no user.
        _ = try request("POST", "/query", form: ["q": "CREATE USER \(Self.user) WITH PASSWORD '\(Self.password)' WITH ALL PRIVILEGES"], authenticated: false)
        for database in databases {
            let (status, body) = try request("POST", "/query", form: ["q": "CREATE DATABASE \(database)"])
            guard status == 200 else { throw TestSetupError.timedOut("CREATE DATABASE \(database): \(status) \(body)") }
        }
    }

    /// Runs influxd and watches the test process: should it die without stopping the server (a
    /// crash skips every deinit), the server is stopped and its folder removed all the same.
    /// SIGTERM stops the server and keeps its data, for a restart.
    static let guardian = """
        "$1" -config "$2" >/dev/null 2>&1 &
        child=$!
        trap 'kill $child 2>/dev/null; wait $child; exit 0' TERM INT
        while kill -0 "$PPID" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
        kill "$child" 2>/dev/null; wait "$child"
        kill -0 "$PPID" 2>/dev/null || rm -rf "$3"
        """

    /// Stops influxd (SIGTERM, then SIGKILL after 10 s), keeping its data for a restart.
    func halt() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date(timeIntervalSinceNow: 10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
    }

    func stop() {
        halt()
        try? FileManager.default.removeItem(at: folder)
    }

    /// The series of an InfluxQL query's result, as InfluxDB's JSON gives them.
    func query(_ text: String, database: String) throws -> [[String: Any]] {
        let (status, body) = try request("POST", "/query", form: ["q": text, "db": database, "epoch": "ns"])
        guard status == 200, let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let results = object["results"] as? [[String: Any]]
        else { throw TestSetupError.timedOut("query '\(text)' failed: \(status) \(body)") }
        if let error = results.first?["error"] as? String { throw TestSetupError.timedOut("query '\(text)': \(error)") }
        return results.first?["series"] as? [[String: Any]] ?? []
    }

    /// One HTTP/1.0 request to influxd's API over a plain socket; returns the status and body.
    private func request(_ method: String, _ path: String, form: [String: String] = [:], authenticated: Bool = true) throws -> (Int, String) {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
        var head = "\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n"
        if authenticated { head += "Authorization: Basic \(Data("\(Self.user):\(Self.password)".utf8).base64EncodedString())\r\n" }
        let response = try exchange(port: httpPort, Array((head + "\r\n" + body).utf8))
        let text = String(decoding: response, as: UTF8.self)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        let content = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, content)
    }
}

/// Sends `bytes` to 127.0.0.1:`port` and reads until the server closes the connection.
func exchange(port: Int, _ bytes: [UInt8], timeout: Int = 10) throws -> [UInt8] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var limit = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw TestSetupError.timedOut("cannot connect to port \(port)") }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        response += buffer[0..<count]
    }
    return response
}
