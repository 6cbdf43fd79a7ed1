import OutboxRelay
import Testing

@Suite struct RedisReplicationTests {
    @Test func parsesSentinelAddresses() throws {
        #expect(
            try RedisReplication.parseSentinels("10.0.0.1:26379, sentinel-b:26380,[::1]:5000,sentinel-c")
                == [.tcp(host: "10.0.0.1", port: 26379), .tcp(host: "sentinel-b", port: 26380), .tcp(host: "::1", port: 5000), .tcp(host: "sentinel-c", port: 26379)])
    }

    @Test(arguments: ["", ",", "host:0", "host:x", ":26379", "[::1]:99999"])
    func refusesBadSentinelLists(_ text: String) {
        #expect(throws: ConfigurationError.self) { try RedisReplication.parseSentinels(text) }
    }
}
