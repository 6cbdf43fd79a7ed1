/// Every statement the relay runs against the outbox table, as values. The table is the layout
/// ruby_event_store-outbox's migration creates (`event_store_outbox`); rows of `format` are relayed.
public struct OutboxQueries: Sendable {
    public let table: TableName
    public let format: String

    public init(table: TableName, format: String = "sidekiq5") {
        self.table = table
        self.format = format
    }

    /// Resolves the table to `schema`, `name`; no row when it does not exist.
    public var resolveTable: SQLStatement {
        SQLStatement(
            """
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
            WHERE c.oid = to_regclass($1)
            """, [table.quoted])
    }

    /// Whether the partial index that keeps fetches cheap exists (one row, `t` or `f`).
    public var hasPendingIndex: SQLStatement {
        SQLStatement(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind = 'i')",
            [TableName.index(pendingIndexName, beside: table)])
    }

    /// The partial index on pending rows, `(format, split_key, id) WHERE enqueued_at IS NULL`.
    /// Without it PostgreSQL has to sort a key's whole backlog for each batch.
    public var pendingIndexName: String { String((table.name + "_pending").utf8.prefix(63))! }

    /// The split keys that have pending rows, found with one index probe per key (a loose index
    /// scan), so the cost grows with the number of keys, not of rows; plus whether any pending row
    /// has a NULL key.
    public var discoverKeys: SQLStatement {
        let t = table.quoted
        return SQLStatement(
            name: "outbox_discover",
            """
            WITH RECURSIVE keys(k) AS ( \
            (SELECT split_key FROM \(t) WHERE format = $1 AND enqueued_at IS NULL AND split_key IS NOT NULL \
            ORDER BY split_key LIMIT 1) \
            UNION ALL \
            SELECT (SELECT split_key FROM \(t) WHERE format = $1 AND enqueued_at IS NULL AND split_key > keys.k \
            ORDER BY split_key LIMIT 1) FROM keys WHERE keys.k IS NOT NULL) \
            SELECT k FROM keys WHERE k IS NOT NULL \
            UNION ALL \
            SELECT NULL WHERE EXISTS (SELECT 1 FROM \(t) WHERE format = $1 AND enqueued_at IS NULL AND split_key IS NULL)
            """, [format])
    }

    /// Up to `limit` pending rows of one key in `id` order, leaving out `skipping` (rows already
    /// found unrelayable). Columns: id, payload, created_at in microseconds since the epoch.
    public func fetch(_ key: SplitKey, limit: Int, skipping: [Int64]) -> SQLStatement {
        let keyCondition = key == .null ? "split_key IS NULL AND $2::varchar IS NULL" : "split_key = $2"
        return SQLStatement(
            name: key == .null ? "outbox_fetch_null" : "outbox_fetch",
            """
            SELECT id, payload, (extract(epoch FROM created_at) * 1000000)::int8 FROM \(table.quoted) \
            WHERE format = $1 AND enqueued_at IS NULL AND \(keyCondition) AND id <> ALL($3::int8[]) \
            ORDER BY id LIMIT $4
            """, [format, key.value, skipping.postgresArrayLiteral, String(limit)])
    }

    /// Marks pushed rows enqueued, in one statement for the whole batch.
    public func markEnqueued(_ ids: [Int64]) -> SQLStatement {
        SQLStatement(
            name: "outbox_mark",
            "UPDATE \(table.quoted) SET enqueued_at = now() WHERE id = ANY($1::int8[]) AND enqueued_at IS NULL",
            [ids.postgresArrayLiteral])
    }

    /// Takes the lease on a split key without waiting; one row, `t` when it was granted.
    public func tryLease(_ key: LeaseKey) -> SQLStatement {
        SQLStatement(name: "outbox_lease", "SELECT pg_try_advisory_lock($1::int8)", [String(key.value)])
    }

    public func releaseLease(_ key: LeaseKey) -> SQLStatement {
        SQLStatement(name: "outbox_release", "SELECT pg_advisory_unlock($1::int8)", [String(key.value)])
    }

    /// The DDL that creates the table as ruby_event_store-outbox's migration does, plus the
    /// relay's partial index on pending rows; every statement is idempotent.
    public var createStatements: [String] {
        let t = table.quoted
        let prefix = table.name
        func index(_ suffix: String) -> String { "\"\(String((prefix + suffix).utf8.prefix(63))!)\"" }
        return [
            """
            CREATE TABLE IF NOT EXISTS \(t) (id bigserial PRIMARY KEY, split_key varchar NULL, \
            format varchar NOT NULL, payload bytea NOT NULL, created_at timestamp(6) NOT NULL, \
            enqueued_at timestamp(6) NULL)
            """,
            "CREATE INDEX IF NOT EXISTS \(index("_format_enqueued_split")) ON \(t) (format, enqueued_at, split_key)",
            "CREATE INDEX IF NOT EXISTS \(index("_created_enqueued")) ON \(t) (created_at, enqueued_at)",
            "CREATE INDEX IF NOT EXISTS \(index("_pending")) ON \(t) (format, split_key, id) WHERE enqueued_at IS NULL",
        ]
    }
}

extension TableName {
    /// An index name in the table's schema, quoted, for `to_regclass`.
    static func index(_ name: String, beside table: TableName) -> String {
        [table.schema, name].compactMap { $0 }.map { "\"\($0)\"" }.joined(separator: ".")
    }
}
