/// A job ready for Sidekiq's Redis: the JSON to store and where it goes.
public struct SidekiqJob: Sendable, Equatable {
    public enum Placement: Sendable, Equatable {
        /// `LPUSH queue:<queue> <json>` plus `SADD queues <queue>`.
        case immediate
        /// `ZADD schedule <score> <json>`; `score` is the payload's `at`, as written there.
        case scheduled(score: String)
    }

    public let queue: String
    public let placement: Placement
    public let json: [UInt8]

    public init(queue: String, placement: Placement, json: [UInt8]) {
        self.queue = queue
        self.placement = placement
        self.json = json
    }
}

/// How Sidekiq timestamps (`enqueued_at`, `created_at`) are written.
public enum TimestampStyle: String, Sendable, CaseIterable {
    /// Float epoch seconds with a decimal point; read correctly by Sidekiq 6, 7 and 8.
    case float
    /// Integer epoch milliseconds, as Sidekiq 8 itself writes them; Sidekiq 6 and 7 misread them.
    case millis

    /// The timestamp `micros` (microseconds since the epoch) as JSON number text.
    public func format(micros: Int64) -> String {
        switch self {
        case .float:
            // Double's description is the shortest text that reads back to the same value, and
            // always has a decimal point for epoch-sized values (1700000000.0, 1700000000.123456).
            return (Double(micros) / 1_000_000).description
        case .millis:
            return String(micros / 1000)
        }
    }
}

/// Why a row's payload cannot become a Sidekiq job.
public struct RejectedPayload: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}
