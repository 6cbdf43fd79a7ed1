import Testing

@testable import OutboxRelay

@Suite struct OutboxQueriesTests {
    let queries = OutboxQueries(table: try! TableName("event_store_outbox"))

    @Test func fetchesOneKeyInIdOrderSkippingKnownBadRows() {
        let statement = queries.fetch(.named("default"), limit: 100, maxBytes: 4096, skipping: [4, 9])
        #expect(statement.sql == """
            SELECT id, payload, created_at, jid, running FROM (\
            SELECT *, sum(coalesce(octet_length(payload), 0)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS running \
            FROM (SELECT id, payload, created_at, NULL::varchar AS jid FROM "event_store_outbox" \
            WHERE format = $1 AND enqueued_at IS NULL AND split_key = $2 AND id <> ALL($3::int8[]) \
            AND id > coalesce($5::int8, (SELECT min(id) - 1 FROM "event_store_outbox" \
            WHERE format = $1 AND enqueued_at IS NULL AND split_key = $2)) ORDER BY id LIMIT $4) AS page) AS sized \
            WHERE running - coalesce(octet_length(payload), 0) < $6::int8 ORDER BY id
            """)
        #expect(statement.parameters == ["sidekiq5", "default", "{4,9}", "100", nil, "4096"])
        #expect(queries.fetch(.named("default"), limit: 100, maxBytes: 4096, skipping: [], after: 77).parameters[4] == "77")
        #expect(statement.name == "outbox_fetch")
    }

    @Test func countsAFetchCutByBytesAsFull() {
        let pending = OutboxQueries.pendingWithinLimit
        #expect(pending(100, 100, 500, 4096) == 100)
        #expect(pending(0, 100, nil, 4096) == 0)
        #expect(pending(7, 100, 900, 4096) == 7, "fewer rows than asked for and room left: that is all")
        #expect(pending(7, 100, 4096, 4096) == 100, "the byte cut ended it: more may be pending")
        #expect(pending(1, 100, 50_000, 4096) == 100, "one row over the cap still comes, alone")
    }

    @Test func readsBinaryTimestampsAsEpochMicroseconds() {
        #expect(OutboxQueries.epochMicros(postgresMicros: 0) == .success(946_684_800_000_000))
        #expect(OutboxQueries.epochMicros(postgresMicros: 815_616_000_123_456) == .success(1_762_300_800_123_456))
        #expect(OutboxQueries.epochMicros(postgresMicros: .max) == .failure(RejectedPayload("created_at is infinity")))
        #expect(OutboxQueries.epochMicros(postgresMicros: .min) == .failure(RejectedPayload("created_at is -infinity")))
        #expect(OutboxQueries.epochMicros(postgresMicros: .max - 1) == .failure(RejectedPayload("created_at is out of range")))
    }

    @Test func fetchesTheNullKeyWithItsOwnStatement() {
        let statement = queries.fetch(.null, limit: 5, maxBytes: 100, skipping: [])
        #expect(statement.sql.contains("split_key IS NULL AND $2::varchar IS NULL"))
        #expect(statement.parameters == ["sidekiq5", nil, "{}", "5", nil, "100"])
        #expect(statement.name == "outbox_fetch_null")
    }

    @Test func quotesEveryKeyOfAnArrayLiteral() {
        #expect([#"a"b"#, #"c\d"#, "{e,f}", "", "ü"].postgresArrayLiteral == #"{"a\"b","c\\d","{e,f}","","ü"}"#)
        #expect([String]().postgresArrayLiteral == "{}")
    }

    @Test func marksABatchInOneStatementAndNeverARowTwice() {
        let statement = queries.markEnqueued([1, 2, 3])
        #expect(statement.sql == #"UPDATE "event_store_outbox" SET enqueued_at = (now() AT TIME ZONE 'utc') WHERE id = ANY($1::int8[]) AND enqueued_at IS NULL"#)
        #expect(statement.parameters == ["{1,2,3}"])
    }

    @Test func leasesWithoutWaiting() {
        let key = LeaseKey(table: "public.event_store_outbox", format: "sidekiq5", splitKey: .named("default"))
        #expect(queries.tryLease(key).sql == "SELECT CASE WHEN pg_try_advisory_lock($1::int8) THEN pg_current_xact_id()::text::int8 END")
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
        #expect(queries.createStatements[3] == #"CREATE INDEX IF NOT EXISTS "event_store_outbox_pending" ON "event_store_outbox" (format, split_key, id) WHERE enqueued_at IS NULL"#)
        #expect(queries.createStatements[4] == """
            CREATE TABLE IF NOT EXISTS "event_store_outbox_dead_letters" (LIKE "event_store_outbox", error text NOT NULL, \
            dead_lettered_at timestamp(6) NOT NULL DEFAULT (now() AT TIME ZONE 'utc'), PRIMARY KEY (id))
            """)
    }

    @Test func asksForConfiguredKeysWithPendingRowsInOneQuery() {
        let statement = queries.keysWithPendingRows(among: [.named("a"), .named("b")])
        #expect(statement.sql.hasPrefix("SELECT k FROM unnest($2::varchar[]) AS k WHERE EXISTS"))
        #expect(statement.parameters == ["sidekiq5", "{\"a\",\"b\"}", "false"])
    }

    @Test func installsAStatementLevelNotifyTrigger() {
        let statements = queries.notifyStatements(channel: "outbox_relay")
        #expect(statements[0].hasPrefix(#"CREATE OR REPLACE FUNCTION "event_store_outbox_notify"() RETURNS trigger"#))
        #expect(statements[0].contains("SELECT string_agg(DISTINCT coalesce(split_key, ''), ',') INTO written_keys FROM outbox_new_rows;"))
        #expect(statements[0].contains("IF octet_length(written_keys) >= 8000 THEN written_keys := ''; END IF;"), "NOTIFY's limit is in bytes")
        #expect(statements[0].contains("PERFORM pg_notify('outbox_relay', coalesce(written_keys, ''));"))
        #expect(statements[0].components(separatedBy: "EXCEPTION WHEN OTHERS THEN").count == 3, "no error escapes into the app's INSERT")
        #expect(statements[2] == """
            CREATE TRIGGER "event_store_outbox_notify" AFTER INSERT ON "event_store_outbox" REFERENCING NEW TABLE AS outbox_new_rows \
            FOR EACH STATEMENT EXECUTE FUNCTION "event_store_outbox_notify"()
            """)
    }

    @Test func movesBadRowsToDeadLettersInOneStatement() {
        let statement = queries.deadLetter([(4, #"bad "json""#), (9, "no queue")])
        #expect(statement.sql == """
            WITH moved AS (DELETE FROM "event_store_outbox" WHERE id = ANY($1::int8[]) AND enqueued_at IS NULL RETURNING *) \
            INSERT INTO "event_store_outbox_dead_letters" SELECT moved.*, r.reason, (now() AT TIME ZONE 'utc') FROM moved \
            JOIN unnest($1::int8[], $2::text[]) AS r(id, reason) ON r.id = moved.id RETURNING id
            """)
        #expect(statement.parameters == ["{4,9}", #"{"bad \"json\"","no queue"}"#])
    }

    @Test func putsDeadLettersBackAsPendingRowsUnderTheirIds() {
        let statement = queries.retryDeadLetters([7])
        #expect(statement.sql.hasPrefix(#"WITH back AS (DELETE FROM "event_store_outbox_dead_letters" WHERE $1::int8[] IS NULL OR id = ANY($1::int8[]) RETURNING *)"#))
        #expect(statement.sql.hasSuffix("SELECT id, split_key, format, payload, created_at, NULL FROM back ORDER BY id RETURNING id"))
        #expect(statement.parameters == ["{7}"])
        #expect(queries.retryDeadLetters(nil).parameters == [nil])
    }

    @Test func servesTheReliableJobLayoutByStatus() throws {
        let reliable = OutboxQueries(layout: .reliableJob, table: try TableName("reliable_job_outbox"))
        let fetch = reliable.fetch(.null, limit: 50, maxBytes: 1000, skipping: [])
        let future = "CASE WHEN json_typeof(payload::json->'at') = 'number' THEN (payload::json->>'at')::numeric > extract(epoch FROM now()) ELSE false END"
        let start = """
            coalesce($3::int8, least((SELECT min(id) FROM "reliable_job_outbox" WHERE status = 'pending' AND NOT \(future)), \
            (SELECT min(id) FROM "reliable_job_outbox" WHERE (status = 'scheduled' AND enqueued_at IS NULL) AND NOT \(future))) - 1)
            """
        #expect(fetch.sql == """
            WITH kept AS (UPDATE "reliable_job_outbox" SET status = 'scheduled', updated_at = (now() AT TIME ZONE 'utc') WHERE id IN (\
            SELECT id FROM (SELECT id, payload FROM "reliable_job_outbox" WHERE status = 'pending' AND ($3::int8 IS NULL OR id > $3::int8) \
            ORDER BY id LIMIT $2) AS next WHERE \(future)) RETURNING id) \
            SELECT id, payload, created_at, jid, running FROM (SELECT *, sum(coalesce(octet_length(payload), 0)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS running \
            FROM (SELECT * FROM ((SELECT id, convert_to(payload::text, 'UTF8') AS payload, created_at, jid FROM "reliable_job_outbox" \
            WHERE status = 'pending' AND id <> ALL($1::int8[]) AND id > \(start) AND NOT \(future) ORDER BY id LIMIT $2) \
            UNION ALL (SELECT id, convert_to((payload::jsonb - 'at')::text, 'UTF8'), created_at, jid FROM "reliable_job_outbox" \
            WHERE (status = 'scheduled' AND enqueued_at IS NULL) AND id <> ALL($1::int8[]) AND id > \(start) AND NOT \(future) ORDER BY id LIMIT $2)) \
            AS relayable ORDER BY id LIMIT $2) AS page) AS sized \
            WHERE running - coalesce(octet_length(payload), 0) < $4::int8 ORDER BY id
            """)
        #expect(fetch.parameters == ["{}", "50", nil, "1000"])
        let mark = reliable.markEnqueued([1, 2, 3], scheduled: [2])
        #expect(mark.sql == """
            UPDATE "reliable_job_outbox" SET status = CASE WHEN id = ANY($2::int8[]) THEN 'scheduled' ELSE 'enqueued' END, \
            enqueued_at = (now() AT TIME ZONE 'utc'), updated_at = (now() AT TIME ZONE 'utc') WHERE id = ANY($1::int8[]) \
            AND (status = 'pending' OR (status = 'scheduled' AND enqueued_at IS NULL))
            """)
        #expect(mark.parameters == ["{1,2,3}", "{2}"])
        #expect(reliable.leaseFormat == "reliable_job")
        #expect(reliable.deadLetter([(1, "x")]).sql.contains("AND (status = 'pending' OR (status = 'scheduled' AND enqueued_at IS NULL)) RETURNING *"))
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

@Suite struct CleanupTests {
    @Test(arguments: [("P7D", 604_800.0), ("PT12H", 43_200.0), ("P1DT30M", 88_200.0), ("PT1.5S", 1.5), ("P1W", 604_800.0), ("p2d", 172_800.0)])
    func parsesDurations(text: String, seconds: Double) throws {
        #expect(try ISODuration(text).seconds == seconds)
    }

    @Test(arguments: ["7D", "P", "PT", "P7", "P1H", "PT1D", "P1DT", "week"])
    func refusesOtherText(text: String) {
        #expect(throws: ConfigurationError.self) { try ISODuration(text) }
    }

    @Test func deletesInChunksUpToTheLimit() throws {
        let limited = CleanupPolicy(retention: try ISODuration("P7D"), limit: 2500)
        #expect(limited.nextChunk(deletedSoFar: 0, lastChunkDeleted: nil) == 1000)
        #expect(limited.nextChunk(deletedSoFar: 2000, lastChunkDeleted: 1000) == 500)
        #expect(limited.nextChunk(deletedSoFar: 2500, lastChunkDeleted: 500) == nil)
        let all = CleanupPolicy(retention: try ISODuration("P7D"), limit: nil)
        #expect(all.nextChunk(deletedSoFar: 9000, lastChunkDeleted: 1000) == 1000)
        #expect(all.nextChunk(deletedSoFar: 9400, lastChunkDeleted: 400) == nil)
    }

    @Test func neverTouchesPendingRows() throws {
        let queries = OutboxQueries(table: try TableName("event_store_outbox"))
        let statement = queries.cleanup(olderThan: 604_800, limit: 1000)
        #expect(statement.sql.contains("WHERE enqueued_at IS NOT NULL AND enqueued_at < (now() AT TIME ZONE 'utc') - make_interval(secs => $1::float8) ORDER BY id LIMIT $2"))
        #expect(statement.parameters == ["604800.0", "1000"])
    }
}
