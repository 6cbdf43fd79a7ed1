import Foundation
import Logging

/// A small HTTP/1.1 server on its own thread for Prometheus and health checks:
/// `GET /metrics` (the exposition `render` returns), `GET /healthz` (200 while the relay's loop
/// makes progress) and `GET /readyz` (200 while PostgreSQL and Redis both answer). One request
/// per connection, bounded reads with a timeout, nothing else.
public final class MetricsServer: @unchecked Sendable {
    private let socket: Int32
    private let render: @Sendable () -> [UInt8]
    private let health: RelayHealth
    private let logger: Logger

    /// Binds `host:port` (an IPv4 or IPv6 address, or a name) right away, so a taken port fails
    /// at start-up with a clear message.
    public init(listen: String, health: RelayHealth, logger: Logger, render: @escaping @Sendable () -> [UInt8]) throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (1...65535).contains(port) else {
            throw MetricsServerError("--metrics-listen must be HOST:PORT, got '\(listen)'")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list) == 0, let address = list else {
            throw MetricsServerError("--metrics-listen: cannot resolve '\(host)'")
        }
        defer { freeaddrinfo(list) }
        let fd = Glibc.socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard fd >= 0, bind(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw MetricsServerError("--metrics-listen: cannot listen on \(listen): \(reason)")
        }
        self.socket = fd
        self.health = health
        self.logger = logger
        self.render = render
    }

    public func start() {
        let thread = Thread { [self] in serve() }
        thread.name = "outbox-relay-metrics"
        thread.start()
    }

    private func serve() {
        while true {
            let client = accept(socket, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                logger.error("metrics server stopped: \(String(cString: strerror(errno)))")
                return
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192, !request.ends(with: [13, 10, 13, 10]) {
            let count = recv(client, &chunk, chunk.count, 0)
            if count <= 0 { return }
            request += chunk[0..<count]
        }
        let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
        guard line.count >= 2, line[0] == "GET" || line[0] == "HEAD" else {
            return respond(client, status: "405 Method Not Allowed", body: Array("only GET\n".utf8))
        }
        let path = line[1].split(separator: "?").first.map(String.init) ?? "/"
        switch path {
        case "/metrics":
            respond(client, status: "200 OK", body: render(), type: "text/plain; version=0.0.4; charset=utf-8")
        case "/healthz":
            health.isLive
                ? respond(client, status: "200 OK", body: Array("ok\n".utf8))
                : respond(client, status: "503 Service Unavailable", body: Array("the relay's loop is stalled\n".utf8))
        case "/readyz":
            health.isReady
                ? respond(client, status: "200 OK", body: Array("ready\n".utf8))
                : respond(client, status: "503 Service Unavailable", body: Array("waiting for PostgreSQL or Redis\n".utf8))
        default:
            respond(client, status: "404 Not Found", body: Array("try /metrics, /healthz or /readyz\n".utf8))
        }
    }

    private func respond(_ client: Int32, status: String, body: [UInt8], type: String = "text/plain; charset=utf-8") {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }
}

public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}
