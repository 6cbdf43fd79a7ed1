import OutboxRelay
import Testing

@Suite struct InfluxURLTests {
    @Test func readsHTTPURLsAsResOutboxsClientDoes() throws {
        let url = try InfluxURL("http://grafana:p%40ss@influx.internal:8087/app_metrics")
        #expect(url.transport == .http)
        #expect(url.host == "influx.internal")
        #expect(url.port == 8087)
        #expect(url.database == "app_metrics")
        #expect(url.username == "grafana")
        #expect(url.password == "p@ss")
        #expect(url.description == "http://grafana:***@influx.internal:8087/app_metrics")

        let plain = try InfluxURL("https://influx.internal/metrics?username=u&password=secret")
        #expect(plain.transport == .https)
        #expect(plain.port == 8086)
        #expect(plain.username == "u")
        #expect(plain.password == "secret")
        #expect(plain.description == "https://u:***@influx.internal:8086/metrics")
    }

    @Test func readsUDPURLs() throws {
        let url = try InfluxURL("udp://[::1]:8089")
        #expect(url.transport == .udp)
        #expect(url.host == "::1")
        #expect(url.port == 8089)
        #expect(url.database == nil)
        #expect(url.description == "udp://[::1]:8089")
        #expect(try InfluxURL("udp://localhost").port == 4444)
    }

    @Test(arguments: [
        ("http://host:8086", "invalid metrics URL 'http://host:8086': the database is missing, as in http://host:8086/database"),
        ("udp://host:8089/db", "invalid metrics URL 'udp://host:8089/db': a UDP URL names no database (InfluxDB's [[udp]] section does)"),
        ("udp://u:pw@host:8089", "invalid metrics URL 'udp://u:***@host:8089': a UDP URL takes no user or password"),
        ("http://:pw@:8086/db", "invalid metrics URL 'http://:***@:8086/db': the host is missing"),
        ("http://h:0/db", "invalid metrics URL 'http://h:0/db': port '0' is not a number from 1 to 65535"),
        ("http://u:p%zz@h/db", "invalid metrics URL 'http://u:***@h/db': bad percent-encoding in the user or password"),
    ])
    func refusesBadURLsWithoutThePassword(url: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try InfluxURL(url) }
    }
}

@Suite struct InfluxPointTests {
    @Test func writesResOutboxsQueuePointInLineProtocol() {
        let point = ResOutboxPoints.queue(format: "sidekiq5", splitKey: .named("mail ers,x=1"), enqueued: 7, failed: 1, remaining: nil, nanoseconds: 1_700_000_000_123_456_789)
        #expect(point.line == #"ruby_event_store.outbox.queue,format=sidekiq5,split_key=mail\ ers\,x\=1 enqueued=7i,failed=1i 1700000000123456789"#)
        let remaining = ResOutboxPoints.queue(format: "sidekiq5", splitKey: .null, remaining: 42, nanoseconds: 5)
        #expect(remaining.line == "ruby_event_store.outbox.queue,format=sidekiq5 enqueued=0i,failed=0i,remaining=42i 5", "a NULL split key has no tag")
    }

    @Test func writesResOutboxsLockPoint() {
        #expect(ResOutboxPoints.lock(operation: "obtain", result: "taken", nanoseconds: 9).line == "ruby_event_store.outbox.lock,operation=obtain,result=taken value=1i 9")
    }
}

@Suite struct InfluxBufferTests {
    @Test func dropsTheOldestWhenFullAndCountsThem() {
        var buffer = InfluxBuffer(capacity: 3)
        for n in 1...5 { buffer.append("p\(n)") }
        #expect(buffer.dropped == 2)
        #expect(buffer.take(10) == ["p3", "p4", "p5"])
        #expect(buffer.isEmpty)
    }

    @Test func putsBackUnwrittenPointsAheadOfNewerOnesWithinCapacity() {
        var buffer = InfluxBuffer(capacity: 4)
        for n in 1...3 { buffer.append("p\(n)") }
        let taken = buffer.take(2)
        #expect(taken == ["p1", "p2"])
        buffer.append("p4")
        buffer.append("p5")
        buffer.putBack(taken)
        #expect(buffer.dropped == 1, "p1, the oldest, no longer fits")
        #expect(buffer.take(10) == ["p2", "p3", "p4", "p5"])
    }

    @Test func staysBoundedOverManyRounds() {
        var buffer = InfluxBuffer(capacity: 100)
        for n in 0..<10_000 { buffer.append("p\(n)") }
        #expect(buffer.count == 100)
        #expect(buffer.dropped == 9_900)
        #expect(buffer.take(1) == ["p9900"])
    }
}
