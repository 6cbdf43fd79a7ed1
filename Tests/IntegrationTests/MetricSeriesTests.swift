import Foundation
import OutboxRelay
import Testing

/// `--metrics-listen` keeps a bounded number of series, however many split keys come and go.
@Suite(.serialized) struct MetricSeriesTests {
    /// `name{labels} value` lines of the exposition whose name is `metric`, as (labels, value).
    static func samples(_ text: String, _ metric: String) -> [(labels: String, value: Double)] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix(metric + "{"), let close = line.lastIndex(of: "}") else { return nil }
            let labels = String(line[line.index(line.startIndex, offsetBy: metric.count + 1)..<close])
            return Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)).map { (labels, $0) }
        }
    }

    static func splitKeys(_ text: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: #"split_key="([^"]*)""#)
        return Set(pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range(at: 1), in: text)!]) })
    }

    /// Issue 11, item 13: 2,000 one-off keys make at most 100 named series plus `_other`, and the
    /// counters still add up to every row relayed.
    @Test func splitKeySeriesAreBoundedAndAddUp() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let keys = 2000
        try outbox.insert((0..<keys).map { (SplitKey.named("one-off-\($0)"), RelayIntegrationTests.payload("q", $0)) })
        let port = freePort()
        let relay = try RelayProcess([
            "--database-url", outbox.servers.databaseURL, "--redis-url", outbox.redisURL, "--table", outbox.table.description,
            "--metrics-listen", "127.0.0.1:\(port)", "--sleep-on-empty", "0.05",
        ])
        defer { relay.signal(SIGKILL) }
        try waitUntil("rows relayed", seconds: 120) { try outbox.pendingCount() == 0 }
        var text = ""
        let relayed = "outbox_relay_jobs_relayed_total"
        try waitUntil("counters caught up", seconds: 10) {
            text = HTTPProbe.get(port: port, "/metrics", seconds: 5)?.body ?? ""
            return Self.samples(text, relayed).map(\.value).reduce(0, +) == Double(keys)
        }
        let labels = Self.splitKeys(text)
        #expect(labels.count <= 101, "\(labels.count) split_key values")
        #expect(labels.contains("_other"))
        #expect(Self.samples(text, relayed).count <= 101)
        #expect(Self.samples(text, relayed).map(\.value).reduce(0, +) == Double(keys))
        let acquired = Self.samples(text, "outbox_relay_lease_acquisitions_total").filter { $0.labels.contains(#"result="acquired""#) }
        #expect(acquired.map(\.value).reduce(0, +) >= Double(keys))
        #expect(text.utf8.count < 100_000, "/metrics is \(text.utf8.count) bytes")
    }
}
