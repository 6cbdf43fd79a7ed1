import Foundation

/// What `/healthz` and `/readyz` report, written by the relay's loop and read by the metrics
/// server's thread.
public final class RelayHealth: @unchecked Sendable {
    private let lock = NSLock()
    private var lastProgress: Date?
    private var serversAnswer = false
    /// How long the loop may go without going round before `/healthz` fails.
    public let stallSeconds: Double

    public init(stallSeconds: Double) {
        self.stallSeconds = stallSeconds
    }

    /// The loop went round; `serversAnswered` says whether both servers did.
    func loopWentRound(serversAnswered: Bool) {
        lock.lock()
        lastProgress = Date()
        serversAnswer = serversAnswered
        lock.unlock()
    }

    /// The loop is making progress.
    public var isLive: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let lastProgress else { return true }
        return Date().timeIntervalSince(lastProgress) < stallSeconds
    }

    /// Both PostgreSQL and Redis answered on the loop's last round.
    public var isReady: Bool {
        lock.lock()
        defer { lock.unlock() }
        return serversAnswer
    }
}
