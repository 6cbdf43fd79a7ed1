import Foundation

/// Tells the relay's worker thread to stop, and lets it sleep until either the time is up or a
/// stop (or a wake-up) is requested.
public final class StopSignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopRequested = false
    private var wakeRequested = false

    public init() {}

    public var isStopRequested: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopRequested
    }

    public func requestStop() {
        condition.lock()
        stopRequested = true
        condition.broadcast()
        condition.unlock()
    }

    /// Ends the current ``sleep(seconds:)`` early without stopping.
    public func wake() {
        condition.lock()
        wakeRequested = true
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps up to `seconds`; returns early on a stop or wake request.
    public func sleep(seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while !stopRequested && !wakeRequested {
            if !condition.wait(until: deadline) { break }
        }
        wakeRequested = false
    }
}
