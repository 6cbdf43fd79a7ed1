import OutboxRelay
import OutboxRelayIO

/// Samples the pending rows and the oldest pending row's age per split key, every 15 s, for the
/// metrics (Prometheus's gauges, InfluxDB's `remaining`).
struct PendingSampler {
    static let intervalMicros: Int64 = 15_000_000

    typealias Sample = [(key: SplitKey, pending: Double, oldestAge: Double)]

    private let statement: SQLStatement
    private var lastSample: Int64?

    init(queries: OutboxQueries) {
        statement = queries.pendingSummary
    }

    /// The sample when one is due at `nowMicros` (monotonic), else nil.
    mutating func sampleIfDue(postgres: PostgresConnection, nowMicros: Int64) throws -> Sample? {
        if let lastSample, nowMicros - lastSample < Self.intervalMicros { return nil }
        lastSample = nowMicros
        let rows = try postgres.query(statement)
        return (0..<rows.count).map { row in
            (key: SplitKey(rows.text(row, 0)), pending: Double(rows.int64(row, 1) ?? 0), oldestAge: rows.text(row, 2).flatMap(Double.init) ?? 0)
        }
    }
}
