import Foundation
import OutboxRelay

/// Why a socket call failed, in words.
struct SocketError: Error {
    let message: String

    static func fromErrno(_ call: String) -> SocketError {
        let code = errno
        if code == EAGAIN || code == EWOULDBLOCK { return SocketError(message: "\(call) timed out") }
        return SocketError(message: "\(call) failed: \(String(cString: strerror(code)))")
    }
}

/// Opens a blocking stream socket with a connect timeout, then sets read and write timeouts,
/// TCP keepalive and TCP_NODELAY on it.
enum SocketConnector {
    static func connect(to address: RedisEndpoint.Address, timeout: Double) throws(SocketError) -> Int32 {
        switch address {
        case .tcp(let host, let port):
            return try connectTCP(host: host, port: port, timeout: timeout)
        case .unix(let path):
            return try connectUnix(path: path, timeout: timeout)
        }
    }

    private static func connectTCP(host: String, port: Int, timeout: Double) throws(SocketError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            throw SocketError(message: "cannot resolve '\(host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = SocketError(message: "no address for '\(host)'")
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            do {
                let fd = try open(family: current.pointee.ai_family, address: current.pointee.ai_addr,
                    length: current.pointee.ai_addrlen, timeout: timeout)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                var idle: Int32 = 5, interval: Int32 = 2, count: Int32 = 3
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &count, socklen_t(MemoryLayout<Int32>.size))
                return fd
            } catch {
                lastError = error
            }
            entry = current.pointee.ai_next
        }
        throw lastError
    }

    private static func connectUnix(path: String, timeout: Double) throws(SocketError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw SocketError(message: "unix socket path is too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return try withUnsafePointer(to: &address) { pointer throws(SocketError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SocketError) in
                try open(family: AF_UNIX, address: raw, length: socklen_t(MemoryLayout<sockaddr_un>.size), timeout: timeout)
            }
        }
    }

    private static func open(family: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, timeout: Double) throws(SocketError) -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.fromErrno("socket") }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if Glibc.connect(fd, address, length) != 0 {
            guard errno == EINPROGRESS else {
                let error = SocketError.fromErrno("connect")
                close(fd)
                throw error
            }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, Int32(timeout * 1000))
            var socketError: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &size)
            guard ready == 1, socketError == 0 else {
                close(fd)
                if ready == 0 { throw SocketError(message: "connect timed out after \(timeout) s") }
                throw SocketError(message: "connect failed: \(String(cString: strerror(socketError)))")
            }
        }
        _ = fcntl(fd, F_SETFL, flags)
        var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }
}
