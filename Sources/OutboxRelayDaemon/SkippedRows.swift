import OutboxRelay

/// Rows that could be neither relayed nor dead-lettered, per split key, so fetches pass over
/// them. The memory is dropped every ``lifetimeMicros`` so they are tried again (for example once
/// the dead-letter table exists).
struct SkippedRows {
    static let lifetimeMicros: Int64 = 300_000_000

    private var rows: [SplitKey: Set<Int64>] = [:]
    private var since: Int64 = 0

    mutating func expire(nowMicros: Int64) {
        if nowMicros - since > Self.lifetimeMicros {
            rows = [:]
            since = nowMicros
        }
    }

    /// Remembers a row; false when it was already known.
    mutating func insert(_ id: Int64, key: SplitKey) -> Bool {
        rows[key, default: []].insert(id).inserted
    }

    func ids(for key: SplitKey) -> [Int64] {
        rows[key].map { $0.sorted() } ?? []
    }
}
