import Foundation

/// Tells the relay's worker thread to stop, and lets it sleep until the time is up, a stop is
/// requested, or a watched file descriptor (the LISTEN connection's socket) has data.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var stopRequested = false
    /// A self-pipe: a byte written to `fds[1]` wakes any `poll` on `fds[0]`.
    private var fds: [Int32] = [-1, -1]

    public init() {
        _ = pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        close(fds[0])
        close(fds[1])
    }

    public var isStopRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    public func requestStop() {
        lock.lock()
        stopRequested = true
        lock.unlock()
        wake()
    }

    /// Ends the current sleep early without stopping.
    public func wake() {
        var byte: UInt8 = 1
        _ = write(fds[1], &byte, 1)
    }

    public enum Wakeup: Equatable {
        case timeout, stop, readable
    }

    /// Sleeps up to `seconds`, or until a stop or wake request, or until `watching` is readable.
    @discardableResult
    public func sleep(seconds: Double, watching: Int32? = nil) -> Wakeup {
        if isStopRequested { return .stop }
        var pollers = [pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)]
        if let watching { pollers.append(pollfd(fd: watching, events: Int16(POLLIN), revents: 0)) }
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000).rounded(.up))
            let ready = poll(&pollers, nfds_t(pollers.count), remaining)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { return .timeout }
            if pollers[0].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 64)
                while read(fds[0], &buffer, buffer.count) > 0 {}
                return isStopRequested ? .stop : .readable
            }
            return .readable
        }
    }
}
