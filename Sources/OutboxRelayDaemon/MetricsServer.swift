import Foundation
import Logging

/// A small HTTP/1.1 server for Prometheus and health checks: `GET /metrics` (the exposition
/// `render` returns), `GET /healthz` (200 while the relay's loop makes progress) and
/// `GET /readyz` (200 while PostgreSQL and Redis both answer). One request per connection.
///
/// Connections are served concurrently, each on a thread of its own, so a slow client cannot hold
/// up the probes: every request has a total deadline (``Limits/requestSeconds``, measured on the
/// monotonic clock) after which its connection is closed whatever the client is doing, and
/// connections beyond ``Limits/maxConnections`` are answered 503 and closed at once.
public final class MetricsServer: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Most connections served at once; more are refused.
        public var maxConnections: Int
        /// Most seconds a connection may take, from accept to the last byte of the answer.
        public var requestSeconds: Double

        public init(maxConnections: Int = 32, requestSeconds: Double = 5) {
            self.maxConnections = maxConnections
            self.requestSeconds = requestSeconds
        }
    }

    private let socket: Int32
    private let render: @Sendable () -> [UInt8]
    private let health: RelayHealth
    private let logger: Logger
    private let limits: Limits
    private let monotonicMicros: @Sendable () -> Int64
    private let lock = NSLock()
    private var connections = 0
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    /// Binds `host:port` (an IPv4 or IPv6 address, or a name) right away, so a taken port fails
    /// at start-up with a clear message.
    public init(
        listen: String, health: RelayHealth, logger: Logger, limits: Limits = Limits(),
        monotonicMicros: @escaping @Sendable () -> Int64 = RelayClock.monotonicMicros, render: @escaping @Sendable () -> [UInt8]
    ) throws {
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
        guard fd >= 0 else {
            throw MetricsServerError("--metrics-listen: cannot open a socket: \(String(cString: strerror(errno)))")
        }
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0,
            bind(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0, Glibc.listen(fd, 64) == 0
        else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw MetricsServerError("--metrics-listen: cannot listen on \(listen): \(reason)")
        }
        self.socket = fd
        self.health = health
        self.logger = logger
        self.limits = limits
        self.monotonicMicros = monotonicMicros
        self.render = render
    }

    public func start() {
        let thread = Thread { [self] in
            serve()
            finished.signal()
        }
        thread.name = "outbox-relay-metrics"
        thread.start()
    }

    /// Stops accepting connections and closes the listening socket; connections being served
    /// finish within their deadline.
    public func stop() {
        lock.lock()
        let wasStopped = stopped
        stopped = true
        lock.unlock()
        guard !wasStopped else { return }
        // Wakes the accept() below, which then fails.
        shutdown(socket, Int32(SHUT_RDWR))
        finished.wait()
        close(socket)
    }

    /// Connections being served now.
    public var openConnections: Int {
        lock.lock()
        defer { lock.unlock() }
        return connections
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    private func serve() {
        var failures = 0
        while !isStopped {
            let client = accept(socket, nil, nil)
            if client < 0 {
                let code = errno
                if isStopped { return }
                if code == EINTR || code == ECONNABORTED { continue }
                // Out of file descriptors or memory: say so once, and try again shortly.
                if failures == 0 { logger.error("metrics server cannot accept connections: \(String(cString: strerror(code))); retrying") }
                failures += 1
                usleep(UInt32(min(1_000_000, 100_000 * failures)))
                continue
            }
            // Failing would only let a child inherit the socket, and the relay starts none.
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            if failures > 0 {
                logger.info("metrics server accepts connections again")
                failures = 0
            }
            lock.lock()
            let admitted = connections < limits.maxConnections
            if admitted { connections += 1 }
            lock.unlock()
            guard admitted else {
                refuse(client)
                continue
            }
            let deadline = monotonicMicros() + Int64(limits.requestSeconds * 1_000_000)
            Thread.detachNewThread { [self] in
                handle(client, deadline: deadline)
                close(client)
                lock.lock()
                connections -= 1
                lock.unlock()
            }
        }
    }

    /// Answers 503 without waiting for the request, and closes.
    private func refuse(_ client: Int32) {
        let answer = Array("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n".utf8)
        _ = answer.withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        shutdown(client, Int32(SHUT_WR))
        close(client)
    }

    private func handle(_ client: Int32, deadline: Int64) {
        guard fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK) == 0 else { return }
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while !request.ends(with: [13, 10, 13, 10]) {
            guard request.count < 8192 else {
                return respond(client, status: "431 Request Header Fields Too Large", body: Array("request too large\n".utf8), deadline: deadline)
            }
            guard wait(client, for: Int16(POLLIN), until: deadline) else {
                return respond(client, status: "408 Request Timeout", body: Array("request not complete in time\n".utf8), deadline: deadline)
            }
            let count = recv(client, &chunk, chunk.count, 0)
            if count == 0 { return }
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return
            }
            request += chunk[0..<count]
        }
        let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
        guard line.count >= 2, line[0] == "GET" || line[0] == "HEAD" else {
            return respond(client, status: "405 Method Not Allowed", body: Array("only GET\n".utf8), deadline: deadline)
        }
        let path = line[1].split(separator: "?").first.map(String.init) ?? "/"
        switch path {
        case "/metrics":
            respond(client, status: "200 OK", body: render(), type: "text/plain; version=0.0.4; charset=utf-8", deadline: deadline)
        case "/healthz":
            health.isLive
                ? respond(client, status: "200 OK", body: Array("ok\n".utf8), deadline: deadline)
                : respond(client, status: "503 Service Unavailable", body: Array("the relay's loop is stalled\n".utf8), deadline: deadline)
        case "/readyz":
            health.isReady
                ? respond(client, status: "200 OK", body: Array("ready\n".utf8), deadline: deadline)
                : respond(client, status: "503 Service Unavailable", body: Array("waiting for PostgreSQL or Redis\n".utf8), deadline: deadline)
        default:
            respond(client, status: "404 Not Found", body: Array("try /metrics, /healthz or /readyz\n".utf8), deadline: deadline)
        }
    }

    /// Writes the answer, giving up at the deadline.
    private func respond(_ client: Int32, status: String, body: [UInt8], type: String = "text/plain; charset=utf-8", deadline: Int64) {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                offset += sent
            } else if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                guard wait(client, for: Int16(POLLOUT), until: deadline) else { return }
            } else {
                return
            }
        }
    }

    /// Waits until `client` is ready for `events`; false once the deadline has passed.
    private func wait(_ client: Int32, for events: Int16, until deadline: Int64) -> Bool {
        while true {
            let remaining = deadline - monotonicMicros()
            guard remaining > 0 else { return false }
            var poller = pollfd(fd: client, events: events, revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining / 1000 + 1, 60_000)))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return false }
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
