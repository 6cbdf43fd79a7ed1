import Testing

@testable import OutboxRelay

/// Every reading of a password that some parser may repeat, and Redis URLs redacted whatever
/// their form.
@Suite struct ConnectionSecretsTests {
    @Test(arguments: [
        // An unencoded @: libpq takes "Secret" as the password and "SecretHalf@db" as the host.
        ("postgresql://app:Secret@SecretHalf@db:5432/app", ["Secret@SecretHalf", "SecretHalf", "Secret"]),
        // Percent-encoded: the raw and the decoded form, and the pieces of the decoded one.
        ("postgresql://app:Qm%40rkSecret@db/app", ["Qm%40rkSecret", "Qm@rkSecret", "Qm%40rkSecret", "rkSecret"]),
        // A % that is no escape: kept raw.
        ("postgresql://app:50%offSecret@db/app", ["50%offSecret"]),
        ("redis://:S3cr/et+Pw==@127.0.0.1:6379x/0", ["S3cr/et+Pw==", "et+Pw==", "S3cr"]),
        ("redis://NoUserSecret@h:1/0", ["NoUserSecret"]),
        ("redis://h:1/0?password=Query%2FPass&db=1", ["Query%2FPass", "Query/Pass", "Query", "Pass"]),
        ("host=db port=5432 password=SecA SecretB dbname=app", ["SecretB", "SecA"]),
        ("host=db password='Quo ted' user=app", ["Quo ted"]),
        ("postgresql://Zq9x@Kv7:Ym3@db/app", ["Zq9x@Kv7:Ym3", "Zq9x", "Kv7", "Ym3"]),
    ])
    func findsEveryReading(text: String, expected: [String]) {
        let found = ConnectionSecrets.candidates(in: text)
        for secret in expected { #expect(found.contains(secret), "\(secret) in \(found)") }
    }

    @Test func findsNoSecretWhereThereIsNone() {
        #expect(ConnectionSecrets.candidates(in: "postgresql://postgres@db:5432/app?sslmode=verify-full") == [])
        #expect(ConnectionSecrets.candidates(in: "redis://cache:6379/0") == [])
        #expect(ConnectionSecrets.candidates(in: "--database-url=postgresql://postgres@db/app") == [], "a user name is no secret")
        #expect(ConnectionSecrets.candidates(in: "--redis-url=redis://NoUser@db/0") == ["NoUser"])
        #expect(ConnectionSecrets.candidates(in: "host=db port=5432 user=app") == [])
        #expect(ConnectionSecrets.candidates(in: "postgresql://app:pw@db/app") == ["pw"], "a short password is still a secret; its pieces are not")
    }

    @Test(arguments: [
        ("redis://:S3cr/et+Pw==@127.0.0.1:6379x/0", "redis://:***@127.0.0.1:6379x/0"),
        ("redis://user:S3cr?et@h:1/0", "redis://user:***@h:1/0"),
        ("redis://user:a@b@h:1/0", "redis://***@h:1/0"),
        // An @ in the user info: no reading of it can be trusted, so none of it shows.
        ("redis://Zq9x@Kv7:Ym3@127.0.0.1:1/0", "redis://***@127.0.0.1:1/0"),
        ("redis://Zq9x@Kv7/Ym3?Tn5#Rb8%Lp2:Hs4+Wd6@127.0.0.1:1/0", "redis://***@127.0.0.1:1/0"),
        ("redis://S3cr/et@h:1/0", "redis://***@h:1/0"),
        ("redis:/:NoScheme@h", "***"),
        ("redis://h:1/0?db=2&PASSWORD=x/y&user=u", "redis://h:1/0?db=2&PASSWORD=***&user=u"),
        ("unix://:pw/x@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ])
    func redactsRedisURLsWhateverTheirForm(url: String, redacted: String) {
        #expect(RedisEndpoint.redact(url) == redacted)
    }

    @Test func aBadRedisURLNeverShowsItsPassword() {
        #expect(throws: ConfigurationError("invalid Redis URL 'redis://:***@127.0.0.1:6379x/0': port '6379x' is not a number from 1 to 65535")) {
            try RedisEndpoint(url: "redis://:S3cr/et+Pw==@127.0.0.1:6379x/0")
        }
    }
}
