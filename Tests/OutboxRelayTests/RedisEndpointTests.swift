import Testing

@testable import OutboxRelay

@Suite struct RedisEndpointTests {
    @Test func parsesHostPortAndDatabase() throws {
        #expect(try RedisEndpoint(url: "redis://cache.internal:6380/3") == RedisEndpoint(address: .tcp(host: "cache.internal", port: 6380), database: 3))
        #expect(try RedisEndpoint(url: "redis://localhost") == RedisEndpoint(address: .tcp(host: "localhost", port: 6379)))
        #expect(try RedisEndpoint(url: "redis://[::1]:7000/0") == RedisEndpoint(address: .tcp(host: "::1", port: 7000)))
    }

    @Test func parsesUserAndPasswordWithPercentEncoding() throws {
        let endpoint = try RedisEndpoint(url: "redis://relay:p%40ss:word@h:1/2")
        #expect(endpoint.username == "relay")
        #expect(endpoint.password == "p@ss:word")
        #expect(try RedisEndpoint(url: "redis://:secret@h:1").password == "secret")
        #expect(try RedisEndpoint(url: "redis://:secret@h:1").username == nil)
        #expect(try RedisEndpoint(url: "redis://secret@h:1").password == "secret")
    }

    @Test func parsesUnixSocketsAndTLS() throws {
        #expect(try RedisEndpoint(url: "unix:///run/redis.sock?db=4") == RedisEndpoint(address: .unix(path: "/run/redis.sock"), database: 4))
        #expect(try RedisEndpoint(url: "rediss://h:6380").tls)
    }

    @Test(arguments: [
        ("redis://:hunter2@host:notaport/0", "invalid Redis URL 'redis://:***@host:notaport/0': port 'notaport' is not a number from 1 to 65535"),
        ("redis://u:hunter2@host:1/x", "invalid Redis URL 'redis://u:***@host:1/x': database 'x' is not a number"),
        ("http://host", "invalid Redis URL 'http://host': unknown scheme 'http', expected redis, rediss or unix"),
        ("host:6379", "invalid Redis URL 'host:6379': expected redis://host:port/db, rediss://… or unix:///path"),
        ("redis://:hunter2@/0", "invalid Redis URL 'redis://:***@/0': the host is missing"),
    ])
    func refusesBadURLsWithoutShowingThePassword(url: String, message: String) {
        #expect(throws: ConfigurationError(message)) { try RedisEndpoint(url: url) }
    }

    @Test func describesItselfWithoutThePassword() throws {
        #expect(try RedisEndpoint(url: "redis://u:hunter2@h:1/2").description == "redis://u:***@h:1/2")
    }
}

@Suite struct SmallDecisionTests {
    @Test func backoffDoublesUpToTheCapWithJitter() {
        var backoff = Backoff(initial: 0.1, maximum: 1)
        let delays = (0..<6).map { _ in backoff.nextDelay(unitRandom: 1) }
        #expect(delays == [0.1, 0.2, 0.4, 0.8, 1, 1])
        backoff.reset()
        #expect(backoff.nextDelay(unitRandom: 0) == 0.05)
    }

    @Test func batchesGrowFromSmallToTheBatchSize() {
        var tempo = LeaseTempo(maximumBatches: 10, batchSize: 1000)
        var limits: [Int] = []
        while limits.count < 6 {
            limits.append(tempo.limit)
            #expect(tempo.afterBatch(available: tempo.limit) == .fetchAgain)
        }
        #expect(limits == [10, 40, 160, 640, 1000, 1000])
        #expect(LeaseTempo(maximumBatches: 10, batchSize: 3).limit == 3)
    }

    @Test func aBusyKeyKeepsItsBatchSizeIntoTheNextLease() {
        var tempo = LeaseTempo(maximumBatches: 2, batchSize: 1000)
        let first = tempo.afterBatch(available: 10)
        let second = tempo.afterBatch(available: 40)
        #expect([first, second] == [.fetchAgain, .release])
        #expect(tempo.leftBacklog)
        #expect(LeaseTempo(maximumBatches: 2, batchSize: 1000, carriedLimit: tempo.limit).limit == 160)
        var drained = LeaseTempo(maximumBatches: 2, batchSize: 1000)
        let next = drained.afterBatch(available: 3)
        #expect(next == .release)
        #expect(!drained.leftBacklog)
    }

    @Test func leaseIsReleasedWhenDrainedOrAfterTheBatchLimit() {
        var tempo = LeaseTempo(maximumBatches: 3, batchSize: 10)
        #expect(tempo.afterBatch(available: 10) == .fetchAgain)
        #expect(tempo.afterBatch(available: 10) == .fetchAgain)
        #expect(tempo.afterBatch(available: 10) == .release)
        var drained = LeaseTempo(maximumBatches: 3, batchSize: 10)
        #expect(drained.afterBatch(available: 9) == .release)
    }

    @Test func rotationStartsEachPassOneKeyFurther() {
        var rotation = KeyRotation()
        let keys: [SplitKey] = [.named("a"), .named("b"), .named("c")]
        #expect(rotation.order(keys) == keys)
        #expect(rotation.order(keys) == [.named("b"), .named("c"), .named("a")])
        #expect(rotation.order(keys) == [.named("c"), .named("a"), .named("b")])
        #expect(rotation.order([]) == [])
    }
}

@Suite struct EnvironmentArgumentsTests {
    let environment = EnvironmentArguments(flags: ["batch-size", "split-keys", "database-url"])

    @Test func namesVariablesAfterFlags() {
        #expect(EnvironmentArguments.variable(for: "batch-size") == "OUTBOX_RELAY_BATCH_SIZE")
    }

    @Test func addsFlagsFromTheEnvironmentUnlessGiven() {
        let result = environment.apply(
            to: ["--split-keys=a"],
            environment: ["OUTBOX_RELAY_BATCH_SIZE": "500", "OUTBOX_RELAY_SPLIT_KEYS": "b", "OTHER": "x"])
        #expect(result == ["--split-keys=a", "--batch-size", "500"])
    }
}

@Suite struct WatchdogTimerTests {
    @Test func pingsAtHalfTheInterval() {
        var timer = WatchdogTimer(intervalMicros: 10_000_000)
        let pings = [100, 4_000_000, 5_000_100, 5_000_200].map { timer.due(nowMicros: Int64($0)) }
        #expect(pings == [true, false, true, false])
        var off = WatchdogTimer(intervalMicros: nil)
        let offPing = off.due(nowMicros: 100)
        #expect(!offPing)
    }
}
