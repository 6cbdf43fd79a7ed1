internal import COpenSSL
import Foundation
import OutboxRelay

/// The byte stream under a Redis connection: a plain socket, or TLS over it (OpenSSL). Reads and
/// writes block for at most the socket's timeouts.
protocol RedisTransport: AnyObject {
    /// Writes some of `bytes`; returns how many.
    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Int
    /// Writes some of the bytes of `vectors`, in order, as if they were one buffer; returns how many.
    func write(gathering vectors: UnsafeBufferPointer<iovec>) throws(SocketError) -> Int
    /// Reads into `buffer`; returns how many bytes, 0 when the peer closed the connection.
    func read(_ buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int
    /// Ends the stream politely (TLS: a close_notify alert). The owner of the socket calls it
    /// right before it closes the socket, never after: once closed, the socket's number may
    /// already belong to another connection of the process (a PostgreSQL one, say), and bytes
    /// written to it would land there.
    func shutDown()
    /// Bytes received and decoded but not read yet (TLS records already taken off the socket).
    var pendingBytes: Int { get }
}

final class PlainTransport: RedisTransport {
    let socket: Int32

    init(socket: Int32) {
        self.socket = socket
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Int {
        while true {
            let written = Glibc.send(socket, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if written >= 0 { return written }
            if errno != EINTR { throw SocketError.fromErrno("write") }
        }
    }

    /// One `sendmsg`: `writev` with `MSG_NOSIGNAL`, so a closed connection is EPIPE, not SIGPIPE.
    func write(gathering vectors: UnsafeBufferPointer<iovec>) throws(SocketError) -> Int {
        var message = msghdr()
        message.msg_iov = UnsafeMutablePointer(mutating: vectors.baseAddress)
        message.msg_iovlen = vectors.count
        while true {
            let written = sendmsg(socket, &message, Int32(MSG_NOSIGNAL))
            if written >= 0 { return written }
            if errno != EINTR { throw SocketError.fromErrno("write") }
        }
    }

    func shutDown() {}

    var pendingBytes: Int { 0 }

    func read(_ buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int {
        while true {
            let count = recv(socket, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            if errno != EINTR { throw SocketError.fromErrno("read") }
        }
    }
}

/// TLS with OpenSSL over a connected socket: the server's certificate must chain to the CA (or
/// the system's trust store) and name the host (or IP address) connected to.
///
/// OpenSSL writes to the socket with plain `write()`, which raises SIGPIPE (and so kills the
/// process) when the peer has closed the connection. Every OpenSSL call that may write runs with
/// SIGPIPE blocked on the calling thread instead (``SIGPIPEGuard``), so a dropped connection
/// becomes an EPIPE error like any other.
final class TLSTransport: RedisTransport {
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    /// Where ``write(gathering:)`` puts small pieces together; kept from one write to the next.
    private var gathering: [UInt8] = []

    init(socket: Int32, host: String, settings: RedisTLS) throws(SocketError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw SocketError(message: "OpenSSL could not create a context") }
        // The context is configured before SSL_new, which copies its verify mode and trust store.
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        do throws(SocketError) {
            if let ca = settings.caFile {
                guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else { throw Self.failure("cannot load the CA file \(ca)") }
            } else {
                SSL_CTX_set_default_verify_paths(context)
            }
            if let certificate = settings.certificateFile {
                guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
                    throw Self.failure("cannot load the client certificate \(certificate)")
                }
                let key = settings.keyFile ?? certificate
                guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
                    throw Self.failure("cannot load the client key \(key)")
                }
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.context = context
        guard let ssl = SSL_new(context) else {
            SSL_CTX_free(context)
            throw SocketError(message: "OpenSSL could not create a connection")
        }
        self.ssl = ssl
        if host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
        } else {
            SSL_set1_host(ssl, host)
            // SSL_set_tlsext_host_name is a macro over SSL_ctrl.
            // OpenSSL copies the name during the call.
            _ = host.withCString { name in
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
            }
        }
        SSL_set_fd(ssl, socket)
        ERR_clear_error()
        guard SIGPIPEGuard.run({ SSL_connect(ssl) }) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                let reason = String(cString: X509_verify_cert_error_string(verify))
                throw SocketError(message: "TLS handshake refused: the server's certificate does not verify (\(reason))")
            }
            throw Self.failure("TLS handshake failed")
        }
    }

    var pendingBytes: Int { Int(SSL_pending(ssl)) }

    func shutDown() {
        _ = SIGPIPEGuard.run { SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    /// Frees OpenSSL's state only: it writes nothing, since the socket may be closed by now.
    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Int {
        ERR_clear_error()
        let written = SIGPIPEGuard.run { SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count)) }
        if written > 0 { return Int(written) }
        throw error(for: written, "write")
    }

    /// TLS encrypts into records of its own: a large first piece is written as it is, smaller
    /// ones are gathered into one buffer of up to 64 KB first, so a short header is not a record.
    func write(gathering vectors: UnsafeBufferPointer<iovec>) throws(SocketError) -> Int {
        guard let first = vectors.first else { return 0 }
        if first.iov_len >= 16 * 1024 { return try write(UnsafeRawBufferPointer(start: first.iov_base, count: first.iov_len)) }
        gathering.removeAll(keepingCapacity: true)
        for vector in vectors {
            let take = min(vector.iov_len, 64 * 1024 - gathering.count)
            guard take > 0 else { break }
            gathering.append(contentsOf: UnsafeRawBufferPointer(start: vector.iov_base, count: take))
        }
        // SSL_write writes all of a buffer or fails (partial writes are not enabled).
        return try gathering.withUnsafeBytes { bytes in Result { () throws(SocketError) in try write(bytes) } }.get()
    }

    func read(_ buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int {
        ERR_clear_error()
        // A read may write too (TLS 1.3 key updates, alerts).
        let count = SIGPIPEGuard.run { SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count)) }
        if count > 0 { return Int(count) }
        if SSL_get_error(ssl, count) == SSL_ERROR_ZERO_RETURN { return 0 }
        throw error(for: count, "read")
    }

    private func error(for result: Int32, _ call: String) -> SocketError {
        let code = errno
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            ERR_clear_error()
            return SocketError(message: "\(call) timed out")
        case SSL_ERROR_SYSCALL:
            ERR_clear_error()
            errno = code
            return code == 0 ? SocketError(message: "Redis closed the connection") : SocketError.fromErrno(call)
        default:
            return Self.failure("TLS \(call) failed")
        }
    }

    private static func failure(_ what: String) -> SocketError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return SocketError(message: what) }
        var buffer = [UInt8](repeating: 0, count: 256)
        buffer.withUnsafeMutableBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        }
        let reason = String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
        return SocketError(message: "\(what): \(reason)")
    }
}

/// Runs a call that may write to a socket with SIGPIPE blocked on this thread, and discards a
/// SIGPIPE the call raised, so that writing to a closed connection fails with EPIPE instead of
/// killing the process. (libpq does the same around OpenSSL.) `errno` is kept as the call left it.
enum SIGPIPEGuard {
    static func run<T>(_ call: () -> T) -> T {
        var pipe = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipe, &previous)
        var pending = sigset_t()
        sigpending(&pending)
        let alreadyPending = sigismember(&pending, SIGPIPE) == 1
        let result = call()
        let code = errno
        sigemptyset(&pending)
        sigpending(&pending)
        if !alreadyPending && sigismember(&pending, SIGPIPE) == 1 {
            var now = timespec()
            while sigtimedwait(&pipe, nil, &now) < 0 && errno == EINTR {}
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        errno = code
        return result
    }
}
