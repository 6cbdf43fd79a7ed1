import Foundation

/// What `/healthz` and `/readyz` report, written by the relay's loop and read by the metrics
/// server's threads. Liveness follows progress: every lease attempt, every batch relayed and
/// every round of the loop counts, so a long pass over many keys stays live, while a loop wedged
/// on one call does not. Time is read from an injected monotonic clock.
public final class RelayHealth: @unchecked Sendable {
    private let lock = NSLock()
    private let monotonicMicros: @Sendable () -> Int64
    private var lastProgress: Int64?
    private var serversAnswer = false
    /// How long the loop may go without progress before `/healthz` fails.
    public let stallSeconds: Double

    public init(stallSeconds: Double, monotonicMicros: @escaping @Sendable () -> Int64 = RelayClock.monotonicMicros) {
        self.stallSeconds = stallSeconds
        self.monotonicMicros = monotonicMicros
    }

    /// The loop went round; `serversAnswered` says whether both servers did.
    public func loopWentRound(serversAnswered: Bool) {
        let now = monotonicMicros()
        lock.lock()
        lastProgress = now
        serversAnswer = serversAnswered
        lock.unlock()
    }

    /// The loop made progress within a round: a lease attempt, a batch, a cleanup chunk. With
    /// `serversAnswered`, both servers just answered (a batch was pushed and marked).
    public func progressed(serversAnswered: Bool = false) {
        let now = monotonicMicros()
        lock.lock()
        lastProgress = now
        if serversAnswered { serversAnswer = true }
        lock.unlock()
    }

    /// The loop is making progress.
    public var isLive: Bool {
        let now = monotonicMicros()
        lock.lock()
        defer { lock.unlock() }
        guard let lastProgress else { return true }
        return Double(now - lastProgress) < stallSeconds * 1_000_000
    }

    /// Both PostgreSQL and Redis answered on the loop's last round.
    public var isReady: Bool {
        lock.lock()
        defer { lock.unlock() }
        return serversAnswer
    }
}
