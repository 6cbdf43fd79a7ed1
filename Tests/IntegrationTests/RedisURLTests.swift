import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// The Redis URL's database number, password, ACL user and unix socket, against a real Redis.
@Suite(.serialized) struct RedisURLTests {
    @Test func relaysThroughEveryKindOfRedisURL() throws {
        let socket = "/tmp/outbox-relay-test-\(getpid()).sock"
        let redis = try PrivateRedis(
            extraArguments: [
                "--requirepass", "s3cret-pw", "--unixsocket", socket, "--unixsocketperm", "700",
                "--user", "relay", "on", ">relay-pw", "~*", "&*", "+@all",
            ],
            password: "s3cret-pw")
        defer { redis.destroy() }
        let urls = [
            (URLCase(url: "redis://:s3cret-pw@127.0.0.1:\(redis.port)/3", database: 3)),
            (URLCase(url: "redis://relay:relay-pw@127.0.0.1:\(redis.port)/4", database: 4)),
            (URLCase(url: "unix://:s3cret-pw@\(socket)?db=5", database: 5)),
        ]
        for (n, urlCase) in urls.enumerated() {
            let outbox = try TestOutbox()
            defer { outbox.drop() }
            try outbox.insert([(.named("auth"), RelayIntegrationTests.payload("auth", n))])
            var configuration = outbox.configuration()
            configuration.redis = try RedisEndpoint(url: urlCase.url)
            let relay = RelayRunner(configuration)
            try waitUntil("row relayed through \(RedisEndpoint.redact(urlCase.url))") { try outbox.pendingCount() == 0 }
            #expect(relay.finish())
            var admin = redis.adminEndpoint
            admin.database = urlCase.database
            let client = try RedisConnection(endpoint: admin, timeout: 5)
            let jobs = try client.send([RedisCommand("LRANGE", "queue:auth", "0", "-1")])[0]
            #expect(jobs == .array([.bulk(Array(RelayIntegrationTests.pushed("auth", n).utf8))]), "job in database \(urlCase.database)")
        }
    }

    @Test func refusesAWrongPasswordWithAClearErrorAndRetries() throws {
        let redis = try PrivateRedis(extraArguments: ["--requirepass", "right-pw"], password: "right-pw")
        defer { redis.destroy() }
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        var configuration = outbox.configuration()
        configuration.redis = try RedisEndpoint(url: "redis://:wrong-pw@127.0.0.1:\(redis.port)/0")
        let relay = RelayRunner(configuration)
        try outbox.insert([(.named("q"), RelayIntegrationTests.payload("q", 1))])
        // The refusal again and again, logged once: wait for a few retries.
        try waitUntil("three retries") { relay.logs.lines.filter { $0.contains("retrying") }.count >= 3 }
        #expect(relay.finish())
        #expect(try outbox.pendingCount() == 1)
        let errors = relay.logs.lines.filter { $0.contains(" error ") }
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.contains("Redis at redis://***@127.0.0.1:\(redis.port)/0 refused AUTH") == true, "\(errors)")
        #expect(!relay.logs.lines.joined().contains("wrong-pw"))
    }
}

struct URLCase {
    let url: String
    let database: Int
}
