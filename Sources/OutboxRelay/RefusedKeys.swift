/// Split keys whose last batch Redis refused (a key of the wrong type, say). Such a batch stays
/// pending, and so does the rest of its key, to keep row order; the key waits before its next
/// lease, 1 s doubling up to 60 s, while the other keys keep flowing. Its reason is logged once,
/// and again only when it changes.
public struct RefusedKeys: Sendable {
    struct Refusal: Sendable {
        var reason: String
        var delayMicros: Int64
        var retryAtMicros: Int64
    }

    static let firstDelayMicros: Int64 = 1_000_000
    static let longestDelayMicros: Int64 = 60_000_000
    private var refusals: [SplitKey: Refusal] = [:]

    public init() {}

    /// Redis refused a batch of `key`. True when the reason is new for the key (log it).
    public mutating func refused(_ key: SplitKey, reason: String, nowMicros: Int64) -> Bool {
        var refusal = refusals[key] ?? Refusal(reason: "", delayMicros: 0, retryAtMicros: 0)
        let isNew = refusal.reason != reason
        refusal.delayMicros = refusal.delayMicros == 0 ? Self.firstDelayMicros : min(Self.longestDelayMicros, refusal.delayMicros * 2)
        refusal.reason = reason
        refusal.retryAtMicros = nowMicros + refusal.delayMicros
        refusals[key] = refusal
        return isNew
    }

    /// Whether `key` is still waiting after a refusal.
    public func isWaiting(_ key: SplitKey, nowMicros: Int64) -> Bool {
        guard let refusal = refusals[key] else { return false }
        return nowMicros < refusal.retryAtMicros
    }

    /// A lease of `key` pushed again; returns the reason it had been refused for, if it had.
    public mutating func relayed(_ key: SplitKey) -> String? {
        refusals.removeValue(forKey: key)?.reason
    }

    public var isEmpty: Bool { refusals.isEmpty }
}
