import Testing

@testable import OutboxRelay

@Suite struct OutboxQueriesTests {
    let queries = OutboxQueries(table: try! TableName("event_store_outbox"))

    @Test func fetchesOneKeyInIdOrderSkippingKnownBadRows() {
        let statement = queries.fetch(.named("default"), limit: 100, skipping: [4, 9])
        #expect(statement.sql == """
            SELECT id, payload, (extract(epoch FROM created_at) * 1000000)::int8 FROM "event_store_outbox" \
            WHERE format = $1 AND enqueued_at IS NULL AND split_key = $2 AND id <> ALL($3::int8[]) ORDER BY id LIMIT $4
            """)
        #expect(statement.parameters == ["sidekiq5", "default", "{4,9}", "100"])
        #expect(statement.name == "outbox_fetch")
    }

    @Test func fetchesTheNullKeyWithItsOwnStatement() {
        let statement = queries.fetch(.null, limit: 5, skipping: [])
        #expect(statement.sql.contains("split_key IS NULL AND $2::varchar IS NULL"))
        #expect(statement.parameters == ["sidekiq5", nil, "{}", "5"])
        #expect(statement.name == "outbox_fetch_null")
    }

    @Test func marksABatchInOneStatementAndNeverARowTwice() {
        let statement = queries.markEnqueued([1, 2, 3])
        #expect(statement.sql == #"UPDATE "event_store_outbox" SET enqueued_at = now() WHERE id = ANY($1::int8[]) AND enqueued_at IS NULL"#)
        #expect(statement.parameters == ["{1,2,3}"])
    }

    @Test func leasesWithoutWaiting() {
        let key = LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: .named("default"))
        #expect(queries.tryLease(key).sql == "SELECT pg_try_advisory_lock($1::int8)")
        #expect(queries.tryLease(key).parameters == ["3691322891798412196"])
        #expect(queries.releaseLease(key).sql == "SELECT pg_advisory_unlock($1::int8)")
    }

    @Test func quotesSchemaQualifiedNames() throws {
        let other = OutboxQueries(table: try TableName("app.outbox"))
        #expect(other.markEnqueued([1]).sql.contains(#"UPDATE "app"."outbox" SET"#))
        #expect(other.resolveTable.parameters == [#""app"."outbox""#])
        #expect(other.hasPendingIndex.parameters == [#""app"."outbox_pending""#])
    }

    @Test func createsTheResOutboxLayoutIdempotently() {
        #expect(queries.createStatements.allSatisfy { $0.contains("IF NOT EXISTS") })
        #expect(queries.createStatements.last == #"CREATE INDEX IF NOT EXISTS "event_store_outbox_pending" ON "event_store_outbox" (format, split_key, id) WHERE enqueued_at IS NULL"#)
    }
}

@Suite struct TableNameTests {
    @Test(arguments: ["event_store_outbox", "public.outbox", "_t1"])
    func acceptsIdentifiers(name: String) throws {
        #expect(try TableName(name).description == name)
    }

    @Test(arguments: ["", "1abc", "a-b", "a.b.c", "x\"; DROP TABLE y; --", "a b", ".t"])
    func refusesAnythingElse(name: String) {
        #expect(throws: ConfigurationError.self) { try TableName(name) }
    }
}

@Suite struct LeaseKeyTests {
    @Test func isFNV1aOfTableFormatAndKey() {
        #expect(LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: .named("default")).value == 3_691_322_891_798_412_196)
        #expect(LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: .null).value == -3_170_720_902_468_687_543)
    }

    @Test func differsPerKeyAndTable() {
        let a = LeaseKey(table: "public.t", format: "sidekiq5", splitKey: .named("a"))
        #expect(a != LeaseKey(table: "public.t", format: "sidekiq5", splitKey: .named("b")))
        #expect(a != LeaseKey(table: "public.u", format: "sidekiq5", splitKey: .named("a")))
        #expect(LeaseKey(table: "public.t", format: "sidekiq5", splitKey: .named("")) != LeaseKey(table: "public.t", format: "sidekiq5", splitKey: .null))
    }
}
