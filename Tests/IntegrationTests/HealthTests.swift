import Foundation
import Logging
import OutboxRelay
import OutboxRelayDaemon
import Testing

/// `/healthz` follows the relay's progress, batch by batch and key by key, not whole passes.
@Suite(.serialized) struct HealthTests {
    /// Issue 11, item 8: a pass over thousands of keys takes longer than the stall window, and the
    /// relay is busy all along, so `/healthz` must never answer 503 meanwhile.
    @Test func healthzStaysGreenDuringAPassLongerThanTheStallWindow() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        // Keys are leased in groups, so a pass takes about 0.2 ms per key (debug build).
        let keys = 12_000
        let stall = 0.5
        let health = RelayHealth(stallSeconds: stall)
        let port = freePort()
        let server = try MetricsServer(listen: "127.0.0.1:\(port)", health: health, logger: Logger(label: "test")) { [] }
        server.start()
        defer { server.stop() }
        let relay = RelayRunner(outbox.configuration(), health: health)
        defer { relay.finish() }
        // The loop has gone round once (and so has a last round to be measured from), then the
        // rows of the long pass arrive.
        try waitUntil("ready", seconds: 20) { HTTPProbe.get(port: port, "/readyz")?.status == 200 }
        try outbox.insert((0..<keys).map { (SplitKey.named("k\($0)"), RelayIntegrationTests.payload("q", $0)) })

        var answers: [Int: Int] = [:]
        var firstMarked: Date?
        let deadline = Date(timeIntervalSinceNow: 120)
        while Date() < deadline {
            let pending = try outbox.pendingCount()
            if pending == 0 { break }
            if pending < keys && firstMarked == nil { firstMarked = Date() }
            answers[HTTPProbe.get(port: port, "/healthz")?.status ?? 0, default: 0] += 1
            Thread.sleep(forTimeInterval: 0.05)
        }
        let drained = Date()
        #expect(try outbox.pendingCount() == 0, "all rows relayed within 120 s")
        let busy = drained.timeIntervalSince(firstMarked ?? drained)
        #expect(busy > 2 * stall, "the rows took \(busy) s, longer than the stall window, so the test means something")
        #expect(answers.keys.sorted() == [200], "every probe while rows were being marked answered 200: \(answers)")
    }
}
