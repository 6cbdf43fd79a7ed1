import Foundation

/// Waits until one of several sockets has something to read, so that a driver with requests in
/// flight on two servers reads whichever answers first instead of blocking on one while the
/// other's answer waits.
public enum SocketReadiness {
    /// Waits up to `milliseconds` for input on any of `descriptors`; returns those that have some
    /// (none when the time ran out; a hang-up or error counts as input, which the read then reports).
    public static func waitForInput(_ descriptors: [Int32], milliseconds: Int32) -> [Int32] {
        var pollers = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while true {
            let ready = poll(&pollers, nfds_t(pollers.count), milliseconds)
            if ready >= 0 { break }
            if errno != EINTR { return descriptors }
        }
        return pollers.filter { $0.revents != 0 }.map(\.fd)
    }
}
