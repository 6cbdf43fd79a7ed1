import OutboxRelay
import Testing

@Suite struct ReliableJobGemLockTests {
    @Test func isWithAdvisoryLocksKeyPairForTheGemsLockName() {
        // Zlib.crc32("sidekiq_reliable_job") = 3565645936; & 0x7fffffff = 1418162288.
        #expect(ReliableJobGemLock.crc32(Array("sidekiq_reliable_job".utf8)) == 3_565_645_936)
        let lock = ReliableJobGemLock(prefix: nil)
        #expect(lock.key1 == 1_418_162_288)
        #expect(lock.key2 == 0)
        #expect(lock.tryLock.sql == "SELECT pg_try_advisory_lock($1::int4, $2::int4)")
        #expect(lock.tryLock.parameters == ["1418162288", "0"])
        #expect(lock.unlock.sql == "SELECT pg_advisory_unlock($1::int4, $2::int4)")
    }

    @Test(arguments: [
        ("42", 42), ("  7_000abc", 7000), ("-1", 0x7fff_ffff), ("staging", 0), ("", 0), ("4294967297", 1), ("+12", 12),
    ] as [(String, Int32)])
    func readsThePrefixAsRubysToIMaskedTo31Bits(prefix: String, key2: Int32) {
        #expect(ReliableJobGemLock(prefix: prefix).key2 == key2)
    }
}
