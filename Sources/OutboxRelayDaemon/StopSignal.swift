import Foundation

/// Tells the relay's worker thread to stop, and lets it sleep until the time is up, a stop is
/// requested, or a watched file descriptor (the LISTEN connection's socket) has data.
///
/// A self-pipe wakes a sleep at once. When the pipe cannot be made (no file descriptor left:
/// `ulimit -n` too low), ``pipeProblem`` says why and sleeps look for a stop or a wake every
/// 0.1 s instead, so a stop is still noticed at once. Deadlines are on the monotonic clock.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var stopRequested = false
    private var wakeRequested = false
    /// The self-pipe: a byte written to `writeEnd` wakes any `poll` on `readEnd`; -1 without one.
    private let readEnd: Int32
    private let writeEnd: Int32
    private let monotonicMicros: @Sendable () -> Int64
    /// Why there is no self-pipe, when there is none.
    public let pipeProblem: String?
    /// How often a sleep without a self-pipe looks for a stop.
    static let fallbackSliceMillis: Int32 = 100

    public init(monotonicMicros: @escaping @Sendable () -> Int64 = RelayClock.monotonicMicros) {
        self.monotonicMicros = monotonicMicros
        var fds: [Int32] = [-1, -1]
        var problem: String?
        if pipe(&fds) != 0 {
            problem = "cannot create the pipe that wakes the relay for a stop: \(String(cString: strerror(errno)))"
            fds = [-1, -1]
        } else {
            for fd in fds where problem == nil {
                let flags = fcntl(fd, F_GETFL)
                if flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 {
                    problem = "cannot set up the pipe that wakes the relay for a stop: \(String(cString: strerror(errno)))"
                }
            }
            if problem != nil {
                close(fds[0])
                close(fds[1])
                fds = [-1, -1]
            }
        }
        readEnd = fds[0]
        writeEnd = fds[1]
        pipeProblem = problem.map { "\($0); a stop is looked for every 0.1 s instead" }
    }

    deinit {
        if readEnd >= 0 { close(readEnd) }
        if writeEnd >= 0 { close(writeEnd) }
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
        lock.lock()
        wakeRequested = true
        lock.unlock()
        guard writeEnd >= 0 else { return }
        var byte: UInt8 = 1
        // EAGAIN means the pipe is full: a wake-up is pending anyway.
        _ = write(writeEnd, &byte, 1)
    }

    public enum Wakeup: Equatable {
        case timeout, stop, readable
    }

    /// Sleeps up to `seconds`, or until a stop or wake request, or until `watching` is readable.
    @discardableResult
    public func sleep(seconds: Double, watching: Int32? = nil) -> Wakeup {
        if isStopRequested { return .stop }
        var pollers: [pollfd] = []
        if readEnd >= 0 { pollers.append(pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)) }
        if let watching { pollers.append(pollfd(fd: watching, events: Int16(POLLIN), revents: 0)) }
        let deadline = monotonicMicros() + Int64(max(0, seconds) * 1_000_000)
        while true {
            if let wakeup = takeRequest() { return wakeup }
            let remaining = deadline - monotonicMicros()
            if remaining <= 0 { return .timeout }
            var timeout = Int32(min(remaining / 1000 + (remaining % 1000 == 0 ? 0 : 1), Int64(Int32.max)))
            if readEnd < 0 { timeout = min(timeout, Self.fallbackSliceMillis) }
            let ready = poll(&pollers, nfds_t(pollers.count), timeout)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 {
                // poll itself failed (it should not): sleep a slice rather than spin.
                usleep(UInt32(Self.fallbackSliceMillis) * 1000)
                continue
            }
            if ready == 0 { continue }
            if readEnd >= 0, pollers[0].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 64)
                while read(readEnd, &buffer, buffer.count) > 0 {}
                continue
            }
            return .readable
        }
    }

    /// A stop or wake requested since the last look, consumed.
    private func takeRequest() -> Wakeup? {
        lock.lock()
        defer { lock.unlock() }
        if stopRequested { return .stop }
        if wakeRequested {
            wakeRequested = false
            return .readable
        }
        return nil
    }
}
