/// Capped exponential backoff with jitter, for reconnecting to a server that went away.
/// The random source is injected so tests see exact delays.
public struct Backoff: Sendable {
    public let initial: Double
    public let maximum: Double
    public private(set) var attempt = 0

    public init(initial: Double = 0.1, maximum: Double = 5) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay in seconds before the next attempt: `initial * 2^attempt` capped at `maximum`,
    /// scaled by a jitter factor in [0.5, 1] taken from `unitRandom` (a value in [0, 1]).
    public mutating func nextDelay(unitRandom: Double) -> Double {
        let exponent = Double(min(attempt, 30))
        attempt += 1
        let base = min(maximum, initial * pow2(exponent))
        return base * (0.5 + 0.5 * min(max(unitRandom, 0), 1))
    }

    public mutating func reset() {
        attempt = 0
    }

    private func pow2(_ exponent: Double) -> Double {
        var value = 1.0
        for _ in 0..<Int(exponent) { value *= 2 }
        return value
    }
}
