import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// `migrate` on tables the gems created: their indexes are recognised by definition, and on a
/// table with rows the missing ones are built concurrently, without blocking the app's inserts.
@Suite(.serialized) struct MigrateTests {
    /// The indexes of `table` in `schema`: name → definition.
    func indexes(_ postgres: PostgresConnection, _ schema: String, _ table: String) throws -> [String: String] {
        let rows = try postgres.query(SQLStatement(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2", [schema, table]))
        return Dictionary(uniqueKeysWithValues: (0..<rows.count).map { (rows.text($0, 0)!, rows.text($0, 1)!) })
    }

    /// A schema of the test's own: `migrate` installs its function once per schema, and tests run
    /// in parallel.
    func makeSchema(_ postgres: PostgresConnection) throws -> String {
        let schema = "migrate_\(getpid())_\(Int.random(in: 0..<1_000_000))"
        try postgres.execute("CREATE SCHEMA \(schema)")
        return schema
    }

    @Test func keepsTheResGemsIndexesAndBuildsThePendingIndexConcurrently() throws {
        let servers = try TestServers.fromEnvironment()
        let table = "gem_outbox"
        let postgres = try PostgresConnection(connectionString: servers.databaseURL)
        let schema = try makeSchema(postgres)
        defer { _ = try? postgres.execute("DROP SCHEMA \(schema) CASCADE") }
        try postgres.execute("SET search_path = \(schema)")
        // As ruby_event_store-outbox's migration creates it.
        try postgres.execute("""
            CREATE TABLE \(table) (id bigserial PRIMARY KEY, split_key varchar NULL, format varchar NOT NULL, payload bytea NOT NULL, \
            created_at timestamp(6) NOT NULL, enqueued_at timestamp(6) NULL)
            """)
        try postgres.execute("CREATE INDEX index_\(table)_for_pool ON \(table) (format, enqueued_at, split_key)")
        try postgres.execute("CREATE INDEX index_\(table)_for_clear ON \(table) (created_at, enqueued_at)")
        try postgres.execute("INSERT INTO \(table) (split_key, format, payload, created_at) SELECT 'k', 'sidekiq5', '\\x7b7d', now() FROM generate_series(1, 1000)")
        let common = ["--database-url", servers.databaseURL, "--table", "\(schema).\(table)"]

        let (printStatus, printed) = try RelayProcess.run(["migrate", "--print"] + common)
        #expect(printStatus == 0)
        let queries = OutboxQueries(table: try TableName("\(schema).\(table)"))
        #expect(printed == """
            -- the existing index index_\(table)_for_pool serves (format, enqueued_at, split_key)
            -- the existing index index_\(table)_for_clear serves (created_at, enqueued_at)
            -- The table has rows, so new indexes are built CONCURRENTLY, which cannot run inside a transaction block: run these statements outside one (in a Rails migration, disable_ddl_transaction!).
            \(queries.createTableStatement);
            CREATE INDEX CONCURRENTLY IF NOT EXISTS "\(table)_pending" ON "\(schema)"."\(table)" (format, split_key, id) WHERE enqueued_at IS NULL;
            \(queries.createDeadLetterTableStatement);
            \(queries.enqueueFunctionStatement);

            """)

        // An open transaction that wrote to the table: a plain CREATE INDEX would queue for its
        // lock and every later insert behind it; a concurrent build lets inserts through.
        let app = try PostgresConnection(connectionString: servers.databaseURL)
        try app.execute("BEGIN")
        try app.execute("INSERT INTO \(schema).\(table) (split_key, format, payload, created_at) VALUES ('k', 'sidekiq5', '\\x7b7d', now())")
        let migrate = try RelayProcess(["migrate"] + common)
        try waitUntil("migrate waits for the open transaction") {
            try postgres.query(SQLStatement(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outbox-relay (command)' AND wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX CONCURRENTLY%'"
            )).int64(0, 0) == 1
        }
        let other = try PostgresConnection(connectionString: servers.databaseURL)
        try other.execute("SET statement_timeout = '5s'")
        try other.execute("INSERT INTO \(schema).\(table) (split_key, format, payload, created_at) VALUES ('k', 'sidekiq5', '\\x7b7d', now())")
        try app.execute("COMMIT")
        #expect(migrate.waitForExit(seconds: 30) == 0, "\(migrate.log)")
        #expect(migrate.log == """
            the existing index index_\(table)_for_pool serves (format, enqueued_at, split_key)
            the existing index index_\(table)_for_clear serves (created_at, enqueued_at)
            migrated: \(schema).\(table) (res layout), its indexes, and \(schema).\(table)_dead_letters

            """)
        let found = try indexes(postgres, schema, table)
        #expect(found.keys.sorted() == ["\(table)_pending", "\(table)_pkey", "index_\(table)_for_clear", "index_\(table)_for_pool"].sorted())
        #expect(found["\(table)_pending"] == "CREATE INDEX \(table)_pending ON \(schema).\(table) USING btree (format, split_key, id) WHERE (enqueued_at IS NULL)")
        let valid = try postgres.query(SQLStatement("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", ["\(schema).\(table)_pending"]))
        #expect(valid.bool(0, 0) == true)

        let (again, output) = try RelayProcess.run(["migrate"] + common)
        #expect(again == 0)
        #expect(output.hasSuffix("migrated: \(schema).\(table) (res layout), its indexes, and \(schema).\(table)_dead_letters\n"))
        #expect(try indexes(postgres, schema, table).count == 4, "idempotent")
    }

    @Test func keepsTheReliableJobGemsUniqueJidIndex() throws {
        let servers = try TestServers.fromEnvironment()
        let table = "gem_reliable"
        let postgres = try PostgresConnection(connectionString: servers.databaseURL)
        let schema = try makeSchema(postgres)
        defer { _ = try? postgres.execute("DROP SCHEMA \(schema) CASCADE") }
        try postgres.execute("SET search_path = \(schema)")
        try postgres.execute(OutboxQueries(layout: .reliableJob, table: try TableName(table)).createTableStatement)
        try postgres.execute("CREATE UNIQUE INDEX index_\(table)_on_jid ON \(table) (jid)")
        try postgres.execute("INSERT INTO \(table) (jid, job_class, payload, created_at, updated_at) VALUES ('j1', 'X', '{}', now(), now())")
        let (status, output) = try RelayProcess.run(["migrate", "--database-url", servers.databaseURL, "--schema", "reliable_job", "--table", "\(schema).\(table)"])
        #expect(status == 0)
        #expect(output.hasPrefix("the existing index index_\(table)_on_jid serves (jid)\n"), "\(output)")
        #expect(try indexes(postgres, schema, table).keys.sorted() == ["\(table)_pending", "\(table)_pkey", "\(table)_scheduled", "index_\(table)_on_jid"].sorted())
    }
}
