import Foundation
import Logging
import OutboxRelayDaemon
import Testing

/// The metrics server over real sockets: slow clients can neither block the probes nor hold
/// connections past the deadline, and connections beyond the cap are refused.
@Suite(.serialized) struct MetricsServerTests {
    static func server(_ limits: MetricsServer.Limits = .init()) throws -> (MetricsServer, Int) {
        let port = freePort()
        let server = try MetricsServer(
            listen: "127.0.0.1:\(port)", health: RelayHealth(stallSeconds: 30), logger: Logger(label: "test"), limits: limits
        ) { Array("outbox_relay_test 1\n".utf8) }
        server.start()
        return (server, port)
    }

    /// Issue 11, item 9: clients sending a byte now and then hold no probe up.
    @Test func probesAnswerWhileSlowClientsHoldConnections() throws {
        let (server, port) = try Self.server()
        defer { server.stop() }
        let slow = (0..<4).compactMap { _ in HTTPProbe(port: port) }
        #expect(slow.count == 4)
        for client in slow { client.send("GET /heal") }
        for _ in 0..<3 {
            let started = Date()
            let answer = HTTPProbe.get(port: port, "/healthz", seconds: 1)
            #expect(answer?.status == 200 && answer?.body == "ok\n", "\(String(describing: answer))")
            #expect(Date().timeIntervalSince(started) < 1)
            #expect(HTTPProbe.get(port: port, "/metrics", seconds: 1)?.body == "outbox_relay_test 1\n")
            for client in slow { client.send("t") }
        }
    }

    /// A client that keeps dribbling is cut when its request's deadline passes.
    @Test func slowClientsAreCutAtTheDeadline() throws {
        let (server, port) = try Self.server(.init(maxConnections: 8, requestSeconds: 1))
        defer { server.stop() }
        let client = try #require(HTTPProbe(port: port))
        let started = Date()
        var closed = false
        while !closed && Date().timeIntervalSince(started) < 5 {
            client.send("G")
            closed = client.readToEnd(seconds: 0.3).closed
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(closed, "the server closed the slow connection")
        #expect(elapsed > 0.9 && elapsed < 2, "closed after \(elapsed) s, at the 1 s deadline")
    }

    /// Beyond the cap a connection is answered 503 and closed at once; once slots free up,
    /// probes are served again.
    @Test func connectionsBeyondTheCapAreRefused() throws {
        let (server, port) = try Self.server(.init(maxConnections: 3, requestSeconds: 5))
        defer { server.stop() }
        var slow = (0..<3).compactMap { _ in HTTPProbe(port: port) }
        for client in slow { client.send("GET /") }
        // Give the server a moment to take all three in: each is then holding a slot.
        try waitUntil("three connections held", seconds: 5) { server.openConnections == 3 }
        let over = try #require(HTTPProbe(port: port))
        let started = Date()
        let (text, closed) = over.readToEnd(seconds: 2)
        #expect(closed && Date().timeIntervalSince(started) < 1, "closed at once")
        #expect(text.hasPrefix("HTTP/1.1 503 "), "\(text)")
        slow.removeAll()
        try waitUntil("slots free again", seconds: 5) { HTTPProbe.get(port: port, "/healthz", seconds: 1)?.status == 200 }
    }
}
