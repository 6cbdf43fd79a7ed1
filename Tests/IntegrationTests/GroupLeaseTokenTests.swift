import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// The fencing token of a group's leases, in a real PostgreSQL: it must be newer than the token of
/// every earlier holder of each lock the group won, even when another instance takes, uses and
/// gives back one of those locks while the group's statement is still working through its keys.
@Suite struct GroupLeaseTokenTests {
    /// The group's statement is held up at one key by a `pg_try_advisory_lock` of the test's own,
    /// found first on the session's `search_path` (it waits, then calls PostgreSQL's). Meanwhile
    /// another session leases a later key of the group as a lone lease does, and lets it go. The
    /// group then wins that key too: its token must be the newer one, or its claim in Redis would
    /// be refused as fenced and the group abandoned.
    @Test func aGroupsTokenIsNewerThanAKeysHolderWhileItsStatementRan() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let lease = { (key: String) in LeaseKey(table: "public.\(outbox.table.name)", format: "sidekiq5", splitKey: .named(key)) }
        let (first, slow, later) = (lease("first"), lease("slow"), lease("later"))
        let schema = "lease_token_\(getpid())_\(outbox.table.name.suffix(6))"
        try outbox.postgres.execute("CREATE SCHEMA \(schema)")
        defer { try? outbox.postgres.execute("DROP SCHEMA \(schema) CASCADE") }
        try outbox.postgres.execute(
            """
            CREATE FUNCTION \(schema).pg_try_advisory_lock(k bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
              IF k = \(slow.value) THEN PERFORM pg_sleep(0.5); END IF;
              RETURN pg_catalog.pg_try_advisory_lock(k);
            END $$
            """)

        let group = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        try group.execute("SET search_path = \(schema), pg_catalog, public")
        let statement = outbox.queries.tryLeases([first, slow, later])
        try group.prepareAhead(statement)
        try group.send([statement], binary: false)

        // While the group's statement waits at `slow`, a lone lease takes `later`, gets its token
        // and lets the lock go.
        let other = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        try waitUntil("the group's statement waits at its slow key", seconds: 10) {
            try other.query(SQLStatement("SELECT wait_event FROM pg_stat_activity WHERE pid = \(group.backendPID)")).text(0, 0) == "PgSleep"
        }
        let held = try other.query(outbox.queries.tryLease(later)).int64(0, 0)
        try #require(held != nil, "the lone lease took the key")
        try other.execute("SELECT pg_advisory_unlock(\(later.value))")

        let tokens = try group.receiveNext()
        let won = (0..<3).map { tokens.int64($0, 0) }
        try #require(won.allSatisfy { $0 != nil }, "the group won all three keys: \(won)")
        #expect(Set(won).count == 1, "one token for the whole group")
        #expect(won[2]! > held!, "the group's token \(won[2]!) is newer than the token \(held!) of the key's holder before it")
    }
}
