import OutboxRelay
import Testing

@Suite struct MigrationPlanTests {
    let res = OutboxQueries(table: try! TableName("event_store_outbox"))
    let reliable = OutboxQueries(layout: .reliableJob, table: try! TableName("reliable_job_outbox"))

    /// The indexes ruby_event_store-outbox's migration creates, under its names.
    static let gemIndexes = [
        ExistingIndex(name: "event_store_outbox_pkey", columns: ["id"], predicate: nil, unique: true, valid: true, method: "btree"),
        ExistingIndex(name: "index_event_store_outbox_for_clear", columns: ["created_at", "enqueued_at"], predicate: nil, unique: false, valid: true, method: "btree"),
        ExistingIndex(name: "index_event_store_outbox_for_pool", columns: ["format", "enqueued_at", "split_key"], predicate: nil, unique: false, valid: true, method: "btree"),
    ]

    @Test func recognisesTheGemsIndexesByDefinitionAndBuildsTheRestConcurrentlyOnATableWithRows() {
        let plan = MigrationPlan(queries: res, state: .init(tableExists: true, hasRows: true, indexes: Self.gemIndexes))
        #expect(plan.statements == [
            res.createTableStatement,
            #"CREATE INDEX CONCURRENTLY IF NOT EXISTS "event_store_outbox_pending" ON "event_store_outbox" (format, split_key, id) WHERE enqueued_at IS NULL"#,
            res.createDeadLetterTableStatement,
        ])
        #expect(plan.reused.map(\.name) == ["index_event_store_outbox_for_pool", "index_event_store_outbox_for_clear"])
        #expect(plan.concurrently)
    }

    @Test func buildsPlainlyOnAnEmptyOrNewTable() {
        for state in [MigrationPlan.State(tableExists: false, hasRows: false, indexes: []), .init(tableExists: true, hasRows: false, indexes: [])] {
            let plan = MigrationPlan(queries: res, state: state)
            #expect(plan.statements.filter { $0.hasPrefix("CREATE INDEX IF NOT EXISTS") }.count == 3)
            #expect(!plan.concurrently)
        }
    }

    @Test func doesNotTakeADifferentIndexForAnEquivalentOne() {
        let near = [
            // Other column order, an expression, another method, an invalid leftover, another condition.
            ExistingIndex(name: "a", columns: ["enqueued_at", "format", "split_key"], predicate: nil, unique: false, valid: true, method: "btree"),
            ExistingIndex(name: "b", columns: ["created_at", ""], predicate: nil, unique: false, valid: true, method: "btree"),
            ExistingIndex(name: "c", columns: ["created_at", "enqueued_at"], predicate: nil, unique: false, valid: true, method: "brin"),
            ExistingIndex(name: "event_store_outbox_pending", columns: ["format", "split_key", "id"], predicate: "(enqueued_at IS NULL)", unique: false, valid: false, method: "btree"),
            ExistingIndex(name: "d", columns: ["format", "split_key", "id"], predicate: "(enqueued_at IS NOT NULL)", unique: false, valid: true, method: "btree"),
        ]
        let plan = MigrationPlan(queries: res, state: .init(tableExists: true, hasRows: true, indexes: near))
        #expect(plan.reused.isEmpty)
        #expect(plan.statements.count == 6)
        #expect(plan.statements[3] == #"DROP INDEX CONCURRENTLY IF EXISTS "event_store_outbox_pending""#, "a failed concurrent build is dropped first")
        #expect(plan.statements[4].hasPrefix(#"CREATE INDEX CONCURRENTLY IF NOT EXISTS "event_store_outbox_pending""#))
    }

    @Test func takesTheGemsUniqueJidIndexAndAPartialIndexAsPostgreSQLPrintsIt() {
        let existing = [
            ExistingIndex(name: "index_reliable_job_outbox_on_jid", columns: ["jid"], predicate: nil, unique: true, valid: true, method: "btree"),
            ExistingIndex(name: "pending_rows", columns: ["id"], predicate: "((status)::text = 'pending'::text)", unique: false, valid: true, method: "btree"),
        ]
        let plan = MigrationPlan(queries: reliable, state: .init(tableExists: true, hasRows: true, indexes: existing))
        #expect(plan.statements == [
            reliable.createTableStatement,
            #"CREATE INDEX CONCURRENTLY IF NOT EXISTS "reliable_job_outbox_scheduled" ON "reliable_job_outbox" (id) WHERE status = 'scheduled' AND enqueued_at IS NULL"#,
            reliable.createDeadLetterTableStatement,
        ])
        #expect(plan.reused.map(\.name) == ["index_reliable_job_outbox_on_jid", "pending_rows"])
        let kept = ExistingIndex(
            name: "kept", columns: ["id"], predicate: "(((status)::text = 'scheduled'::text) AND (enqueued_at IS NULL))", unique: false, valid: true,
            method: "btree")
        #expect(MigrationPlan(queries: reliable, state: .init(tableExists: true, hasRows: true, indexes: existing + [kept])).statements.count == 2)
    }
}
