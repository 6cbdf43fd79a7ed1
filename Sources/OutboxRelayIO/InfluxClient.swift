import Foundation
import OutboxRelay

/// Why InfluxDB did not take a write. `retryable` is false when InfluxDB refused the points
/// themselves (HTTP 400), which sending them again would not change. The message never holds
/// the password.
public struct InfluxError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let retryable: Bool

    public var description: String { message }
}

/// Writes line-protocol lines to InfluxDB 1.x: one `POST /write?db=…&precision=ns` per call over
/// HTTP or HTTPS (Basic authentication when the URL has a user or password), or datagrams of at
/// most ``datagramBytes`` to a UDP listener. Each call blocks for at most the timeout per step, so
/// it belongs on its own thread, never on the relay's.
public final class InfluxClient {
    public let url: InfluxURL
    private let timeout: Double
    private var udpSocket: Int32 = -1
    /// Below the usual MTU, so no datagram is fragmented on its way.
    public static let datagramBytes = 1400

    public init(url: InfluxURL, timeout: Double) {
        self.url = url
        self.timeout = timeout
    }

    deinit {
        if udpSocket >= 0 { close(udpSocket) }
    }

    public func write(_ lines: [String]) throws(InfluxError) {
        guard !lines.isEmpty else { return }
        switch url.transport {
        case .udp: try writeUDP(lines)
        case .http, .https: try writeHTTP(lines)
        }
    }

    // MARK: HTTP

    private func writeHTTP(_ lines: [String]) throws(InfluxError) {
        let body = Array((lines.joined(separator: "\n") + "\n").utf8)
        var head = "POST /write?db=\(Self.queryEncoded(url.database ?? ""))&precision=ns HTTP/1.1\r\n"
        head += "Host: \(url.host.contains(":") ? "[\(url.host)]" : url.host):\(url.port)\r\n"
        head += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
        if url.username != nil || url.password != nil {
            let credentials = Data("\(url.username ?? ""):\(url.password ?? "")".utf8).base64EncodedString()
            head += "Authorization: Basic \(credentials)\r\n"
        }
        head += "\r\n"
        let response: [UInt8]
        do throws(SocketError) {
            let fd = try SocketConnector.connect(to: .tcp(host: url.host, port: url.port), timeout: timeout)
            defer { close(fd) }
            let transport: any RedisTransport =
                url.transport == .https ? try TLSTransport(socket: fd, host: url.host, settings: RedisTLS()) : PlainTransport(socket: fd)
            defer { transport.shutDown() }  // runs before the close above
            try Self.writeAll(Array(head.utf8) + body, to: transport)
            response = try Self.readAll(from: transport)
        } catch {
            throw InfluxError(message: "cannot write to InfluxDB at \(url): \(error.message)", retryable: true)
        }
        let text = String(decoding: response, as: UTF8.self)
        let statusLine = text.prefix { $0 != "\r" && $0 != "\n" }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw InfluxError(message: "InfluxDB at \(url) sent no HTTP status line", retryable: true)
        }
        if (200..<300).contains(status) { return }
        let detail = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...].prefix(300)) } ?? ""
        let message = "InfluxDB at \(url) refused the write: HTTP \(status) \(detail.trimmingCharacters(in: .whitespacesAndNewlines))"
        throw InfluxError(message: message, retryable: status != 400)
    }

    private static func writeAll(_ bytes: [UInt8], to transport: any RedisTransport) throws(SocketError) {
        var offset = 0
        while offset < bytes.count {
            let written = try bytes.withUnsafeBytes { raw in
                Result { () throws(SocketError) in try transport.write(UnsafeRawBufferPointer(rebasing: raw[offset...])) }
            }.get()
            guard written > 0 else { throw SocketError(message: "the connection closed while writing") }
            offset += written
        }
    }

    /// Reads the response until InfluxDB closes the connection (the request said `Connection: close`).
    private static func readAll(from transport: any RedisTransport) throws(SocketError) -> [UInt8] {
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while response.count < 1 << 20 {
            let count = try buffer.withUnsafeMutableBytes { raw in Result { () throws(SocketError) in try transport.read(raw) } }.get()
            if count == 0 { break }
            response += buffer[0..<count]
        }
        return response
    }

    private static func queryEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    // MARK: UDP

    private func writeUDP(_ lines: [String]) throws(InfluxError) {
        if udpSocket < 0 { udpSocket = try openUDP() }
        var datagram: [UInt8] = []
        for line in lines {
            let bytes = Array(line.utf8) + [UInt8(ascii: "\n")]
            if !datagram.isEmpty && datagram.count + bytes.count > Self.datagramBytes {
                try send(datagram)
                datagram = []
            }
            datagram += bytes
        }
        if !datagram.isEmpty { try send(datagram) }
    }

    private func send(_ datagram: [UInt8]) throws(InfluxError) {
        let sent = datagram.withUnsafeBytes { Glibc.send(udpSocket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == datagram.count else {
            let reason = String(cString: strerror(errno))
            close(udpSocket)
            udpSocket = -1
            throw InfluxError(message: "cannot send to InfluxDB at \(url): \(reason)", retryable: true)
        }
    }

    private func openUDP() throws(InfluxError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(url.host, String(url.port), &hints, &list)
        guard status == 0, let list else {
            throw InfluxError(message: "cannot resolve '\(url.host)': \(String(cString: gai_strerror(status)))", retryable: true)
        }
        defer { freeaddrinfo(list) }
        let fd = socket(list.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, Glibc.connect(fd, list.pointee.ai_addr, list.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            if fd >= 0 { close(fd) }
            throw InfluxError(message: "cannot reach InfluxDB at \(url): \(reason)", retryable: true)
        }
        return fd
    }
}
