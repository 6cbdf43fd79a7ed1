import Foundation

/// A raw HTTP client over a real socket, with a total deadline, to probe the metrics server as a
/// kubelet or Prometheus would, and to play slow clients.
final class HTTPProbe {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`; nil when the connection is refused.
    init?(port: Int) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let connected = withLoopback(port: port) { connect(fd, $0, $1) }
        if connected != 0 {
            close(fd)
            return nil
        }
    }

    deinit {
        close(fd)
    }

    /// Sends `text` as is; false when the peer has gone.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Reads until the peer closes or `seconds` pass; returns what came and whether the peer closed.
    func readToEnd(seconds: Double) -> (text: String, closed: Bool) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return (String(decoding: received, as: UTF8.self), false) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, Int32(remaining * 1000) + 1) <= 0 { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received += buffer[0..<count]
        }
    }

    /// `GET path` with a total deadline: the status code and body, or nil when no whole answer
    /// came within `seconds`.
    static func get(port: Int, _ path: String, seconds: Double = 2) -> (status: Int, body: String)? {
        guard let probe = HTTPProbe(port: port), probe.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") else { return nil }
        let (text, closed) = probe.readToEnd(seconds: seconds)
        guard closed, let head = text.range(of: "\r\n\r\n") else { return nil }
        let statusLine = text[..<head.lowerBound].split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return (status, String(text[head.upperBound...]))
    }
}
