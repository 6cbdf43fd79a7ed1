/// The points waiting for InfluxDB, at most `capacity` of them: when InfluxDB is away and the
/// buffer is full, the oldest point is dropped (and counted), so the relay never waits for it and
/// its memory stays bounded.
public struct InfluxBuffer: Sendable {
    public let capacity: Int
    private var lines: [String] = []
    private var start = 0
    /// Points dropped since start because the buffer was full.
    public private(set) var dropped = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var count: Int { lines.count - start }
    public var isEmpty: Bool { count == 0 }

    /// Adds a point's line, dropping the oldest when full.
    public mutating func append(_ line: String) {
        if count == capacity {
            start += 1
            dropped += 1
        }
        lines.append(line)
        compact()
    }

    /// Takes up to `limit` of the oldest lines out.
    public mutating func take(_ limit: Int) -> [String] {
        let end = min(lines.count, start + limit)
        let taken = Array(lines[start..<end])
        start = end
        compact()
        return taken
    }

    /// Puts back lines that could not be written, ahead of newer ones; what no longer fits is
    /// dropped from the oldest end.
    public mutating func putBack(_ taken: [String]) {
        let kept = Array(lines[start...])
        let room = capacity - kept.count
        let back = room >= taken.count ? taken : Array(taken.suffix(max(0, room)))
        dropped += taken.count - back.count
        lines = back + kept
        start = 0
    }

    private mutating func compact() {
        if start > 1024 && start * 2 > lines.count {
            lines.removeFirst(start)
            start = 0
        }
    }
}
