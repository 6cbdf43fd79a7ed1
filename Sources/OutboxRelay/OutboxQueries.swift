/// Every statement the relay runs against the outbox table and its dead-letter table, as values:
/// SQL text with `$n` placeholders and the parameters, for the chosen ``OutboxLayout``.
public struct OutboxQueries: Sendable {
    public let layout: OutboxLayout
    public let table: TableName
    /// Only rows of this `format` are relayed (res layout).
    public let format: String

    public init(layout: OutboxLayout = .res, table: TableName, format: String = "sidekiq5") {
        self.layout = layout
        self.table = table
        self.format = format
    }

    /// `<table>_dead_letters`, beside the outbox: the outbox's columns plus `error` and
    /// `dead_lettered_at`.
    public var deadLetterTable: TableName { table.sibling(suffix: "_dead_letters") }

    /// The name of the partial index on pending rows that keeps each fetch a short index scan.
    public var pendingIndexName: String { String((table.name + "_pending").utf8.prefix(63))! }

    /// The format that, with the table and split key, makes up a lease key.
    public var leaseFormat: String { layout == .res ? format : layout.rawValue }

    // MARK: start-up

    /// Resolves a table to `schema`, `name`; no row when it does not exist.
    public func resolve(_ name: TableName) -> SQLStatement {
        SQLStatement(
            """
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
            WHERE c.oid = to_regclass($1)
            """, [name.quoted])
    }

    public var resolveTable: SQLStatement { resolve(table) }

    /// What scopes the fencing tokens and records (see ``FencedPush/scope(system:database:)``)
    /// exactly as PostgreSQL scopes an advisory lock: the cluster's system identifier and the
    /// database's oid.
    public static let clusterIdentity = SQLStatement(
        "SELECT system_identifier::text, (SELECT oid FROM pg_database WHERE datname = current_database())::text FROM pg_control_system()")

    /// The next transaction id the cluster will assign. A fence whose xid is not below it was never
    /// assigned by this cluster's history: it was restored from a backup, or a standby that was
    /// behind was promoted.
    public static let nextTransactionID = SQLStatement("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")

    /// Whether the pending-rows index exists (one row, `t` or `f`).
    public var hasPendingIndex: SQLStatement {
        SQLStatement(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind = 'i')",
            [table.sibling(named: pendingIndexName).quoted])
    }

    // MARK: relaying

    /// The split keys that have pending rows, found with one index probe per key (a loose index
    /// scan), so the cost grows with the number of keys, not of rows; plus NULL when any pending row
    /// has no key. Only for layouts with split keys.
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

    /// The split keys of the first `rows` pending rows in the pending-rows index, in key order
    /// (NULL last), each with how many of those rows it has: when they add up to fewer than `rows`,
    /// these are all the keys with pending rows. When the pending rows are few and their keys
    /// many, this costs a fraction of ``discoverKeys`` (one index entry per row, read in key order,
    /// against one probe per key: 35 ms against 200 ms for 100,000 rows of 20,000 keys).
    public func discoverKeys(scanningAtMost rows: Int) -> SQLStatement {
        SQLStatement(
            name: "outbox_discover_page",
            """
            SELECT split_key, count(*) FROM (SELECT split_key FROM \(table.quoted) WHERE format = $1 AND enqueued_at IS NULL \
            ORDER BY format, split_key LIMIT $2) AS page GROUP BY split_key ORDER BY split_key NULLS LAST
            """, [format, String(rows)])
    }

    /// Up to `limit` pending rows of one key in `id` order, leaving out `skipping` (rows found
    /// unrelayable that could not be dead-lettered), and cut where the payloads add up to more than
    /// `maxBytes` (the first row always comes). Rows start after `after` (the last id of the
    /// previous batch under the same lease), or, for a lease's first batch, at the smallest pending
    /// id. The bound looks redundant but keeps every plan PostgreSQL may pick cheap: without it, a
    /// generic plan made with statistics taken while a backlog was pending may walk the primary key
    /// through every row already enqueued. Columns: id, payload bytes, created_at (in binary
    /// format: microseconds since 2000-01-01, see ``epochMicros(postgresMicros:)``), the row's jid
    /// column (NULL where the layout has none), and the payload bytes up to and including the row
    /// (see ``pendingWithinLimit(returned:limit:lastRunningBytes:maxBytes:)``). One cheap window
    /// (a running sum, in rows mode) is all the byte cut costs PostgreSQL.
    public func fetch(_ key: SplitKey, limit: Int, maxBytes: Int, skipping: [Int64], after: Int64? = nil) -> SQLStatement {
        let page: String
        let parameters: [String?]
        switch layout {
        case .res:
            let keyCondition = key == .null ? "split_key IS NULL AND $2::varchar IS NULL" : "split_key = $2"
            page = """
                SELECT id, payload, created_at, NULL::varchar AS jid FROM \(table.quoted) \
                WHERE format = $1 AND enqueued_at IS NULL AND \(keyCondition) AND id <> ALL($3::int8[]) \
                AND id > coalesce($5::int8, (SELECT min(id) - 1 FROM \(table.quoted) \
                WHERE format = $1 AND enqueued_at IS NULL AND \(keyCondition))) ORDER BY id LIMIT $4
                """
            parameters = [format, key.value, skipping.postgresArrayLiteral, String(limit), after.map(String.init), String(maxBytes)]
        case .reliableJob:
            page = reliableJobPage
            parameters = [skipping.postgresArrayLiteral, String(limit), after.map(String.init), String(maxBytes)]
        }
        let bytesParameter = "$\(parameters.count)"
        return SQLStatement(
            name: key == .null && layout == .res ? "outbox_fetch_null" : "outbox_fetch",
            """
            \(layout == .reliableJob ? reliableJobParking + " " : "")SELECT id, payload, created_at, jid, running FROM (\
            SELECT *, sum(coalesce(octet_length(payload), 0)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS running \
            FROM (\(page)) AS page) AS sized \
            WHERE running - coalesce(octet_length(payload), 0) < \(bytesParameter)::int8 ORDER BY id
            """, parameters)
    }

    /// Whether ``fetch(_:limit:maxBytes:skipping:after:)`` writes as well as reads: the
    /// sidekiq-reliable_job layout's fetch parks future jobs (``reliableJobParking``), so it runs
    /// on the leasing session, under the gem's lock; res_outbox's only reads, so it may run on
    /// another session.
    public var fetchWrites: Bool { layout == .reliableJob }

    /// How many rows a fetch found pending within its `limit`, for ``LeaseTempo``: all of them
    /// when it returned `limit` rows or when the byte cut ended it (the last row's running total
    /// reached `maxBytes`, so more may follow), else exactly the rows returned.
    public static func pendingWithinLimit(returned: Int, limit: Int, lastRunningBytes: Int64?, maxBytes: Int) -> Int {
        guard returned < limit, let lastRunningBytes else { return returned == 0 ? 0 : limit }
        return lastRunningBytes >= Int64(maxBytes) ? limit : returned
    }

    /// A `timestamp` or `timestamptz` in PostgreSQL's binary format (microseconds since
    /// 2000-01-01 00:00 UTC) as microseconds since the Unix epoch. A `timestamp` without a time
    /// zone is read as UTC, as Rails writes it.
    /// `infinity`, `-infinity` (stored as the largest and smallest `int8`) and the years near
    /// PostgreSQL's limit, which do not fit, are refused with the reason.
    public static func epochMicros(postgresMicros: Int64) -> Result<Int64, RejectedPayload> {
        if postgresMicros == .max { return .failure(RejectedPayload("created_at is infinity")) }
        if postgresMicros == .min { return .failure(RejectedPayload("created_at is -infinity")) }
        let (micros, overflow) = postgresMicros.addingReportingOverflow(946_684_800_000_000)
        return overflow ? .failure(RejectedPayload("created_at is out of range")) : .success(micros)
    }

    /// Which of `keys` have pending rows, in one indexed query (so an idle relay with configured
    /// split keys costs one query per sleep).
    public func keysWithPendingRows(among keys: [SplitKey]) -> SQLStatement {
        switch layout {
        case .res:
            let named = keys.compactMap(\.value)
            return SQLStatement(
                name: "outbox_pending_keys",
                """
                SELECT k FROM unnest($2::varchar[]) AS k WHERE EXISTS \
                (SELECT 1 FROM \(table.quoted) WHERE format = $1 AND enqueued_at IS NULL AND split_key = k) \
                UNION ALL SELECT NULL WHERE $3 AND EXISTS \
                (SELECT 1 FROM \(table.quoted) WHERE format = $1 AND enqueued_at IS NULL AND split_key IS NULL)
                """, [format, named.postgresArrayLiteral, keys.contains(.null) ? "true" : "false"])
        case .reliableJob:
            return SQLStatement(
                name: "outbox_pending_keys",
                """
                SELECT NULL::varchar WHERE EXISTS (SELECT 1 FROM \(table.quoted) WHERE status = 'pending') \
                OR EXISTS (SELECT 1 FROM \(table.quoted) WHERE \(Self.keptScheduled) AND \(Self.due))
                """)
        }
    }

    /// Marks pushed rows, in one statement for the whole batch: `enqueued_at` = now in UTC, and for
    /// sidekiq-reliable_job `status = 'enqueued'`, or `'scheduled'` for the ids in `scheduled`.
    public func markEnqueued(_ ids: [Int64], scheduled: [Int64] = []) -> SQLStatement {
        switch layout {
        case .res:
            return SQLStatement(
                name: "outbox_mark",
                "UPDATE \(table.quoted) SET enqueued_at = \(Self.utcNow) WHERE id = ANY($1::int8[]) AND enqueued_at IS NULL",
                [ids.postgresArrayLiteral])
        case .reliableJob:
            return SQLStatement(
                name: "outbox_mark",
                """
                UPDATE \(table.quoted) SET status = CASE WHEN id = ANY($2::int8[]) THEN 'scheduled' ELSE 'enqueued' END, \
                enqueued_at = \(Self.utcNow), updated_at = \(Self.utcNow) WHERE id = ANY($1::int8[]) AND \(pendingCondition)
                """, [ids.postgresArrayLiteral, scheduled.postgresArrayLiteral])
        }
    }

    /// Moves unrelayable rows into the dead-letter table with their reasons, in one statement, so
    /// a row leaves the pending set exactly when its dead letter exists. Returns the moved ids.
    public func deadLetter(_ rejections: [(id: Int64, reason: String)]) -> SQLStatement {
        SQLStatement(
            name: "outbox_dead_letter",
            """
            WITH moved AS (DELETE FROM \(table.quoted) WHERE id = ANY($1::int8[]) AND \(pendingCondition) RETURNING *) \
            INSERT INTO \(deadLetterTable.quoted) SELECT moved.*, r.reason, \(Self.utcNow) FROM moved \
            JOIN unnest($1::int8[], $2::text[]) AS r(id, reason) ON r.id = moved.id RETURNING id
            """, [rejections.map(\.id).postgresArrayLiteral, rejections.map(\.reason).postgresArrayLiteral])
    }

    /// The current time as the UTC `timestamp` Rails writes into these columns, whatever the
    /// server's or session's time zone.
    static let utcNow = "(now() AT TIME ZONE 'utc')"

    /// Deletes up to `limit` rows enqueued more than `seconds` ago, oldest ids first; never a
    /// pending row. Returns the number deleted as the command tag. (res layout only: the gem's
    /// middleware deletes sidekiq-reliable_job's rows.)
    public func cleanup(olderThan seconds: Double, limit: Int) -> SQLStatement {
        SQLStatement(
            name: "outbox_cleanup",
            """
            DELETE FROM \(table.quoted) WHERE id IN (SELECT id FROM \(table.quoted) WHERE enqueued_at IS NOT NULL \
            AND enqueued_at < \(Self.utcNow) - make_interval(secs => $1::float8) ORDER BY id LIMIT $2) RETURNING id
            """, [String(seconds), String(limit)])
    }

    /// Takes the lease on a split key without waiting. One row: the fencing token when the lease
    /// was granted (the id of this statement's transaction, which only grows across the whole
    /// cluster, so a later holder always has a larger token), NULL when another session holds it.
    public func tryLease(_ key: LeaseKey) -> SQLStatement {
        SQLStatement(
            name: "outbox_lease",
            "SELECT CASE WHEN pg_try_advisory_lock($1::int8) THEN pg_current_xact_id()::text::int8 END",
            [String(key.value)])
    }

    public func releaseLease(_ key: LeaseKey) -> SQLStatement {
        SQLStatement(name: "outbox_release", "SELECT pg_advisory_unlock($1::int8)", [String(key.value)])
    }

    /// Rows the relay may still push: for sidekiq-reliable_job also the future jobs it keeps in the
    /// table (see ``reliableJobParking``).
    private var pendingCondition: String {
        layout == .res ? "enqueued_at IS NULL" : "(status = 'pending' OR \(Self.keptScheduled))"
    }

    // MARK: sidekiq-reliable_job's scheduled jobs

    /// A future job of the reliable_job layout stays in the table, `status = 'scheduled'` with no
    /// `enqueued_at`, and goes straight to its queue when due. Pushed to Sidekiq's `schedule` set
    /// instead, it would be lost with the gem's client middleware installed: Sidekiq's scheduler
    /// calls the middleware when it moves the job to its queue, the middleware stages it again, and
    /// that insert fails on the gem's unique `jid` index after the job left the schedule. (The gem's
    /// own enqueuer marks its scheduled rows with `enqueued_at`, so they are never taken for these.)
    static let keptScheduled = "(status = 'scheduled' AND enqueued_at IS NULL)"

    /// The payload's `at` lies in the future (by PostgreSQL's clock); CASE keeps the cast from
    /// seeing an `at` that is not a number.
    static let future = "CASE WHEN json_typeof(payload::json->'at') = 'number' THEN (payload::json->>'at')::numeric > extract(epoch FROM now()) ELSE false END"

    static let due = "NOT \(future)"

    /// The start of a lease's first page: before the smallest pending or due row.
    private var reliableJobStart: String {
        let t = table.quoted
        return """
            coalesce($3::int8, least((SELECT min(id) FROM \(t) WHERE status = 'pending' AND \(Self.due)), \
            (SELECT min(id) FROM \(t) WHERE \(Self.keptScheduled) AND \(Self.due))) - 1)
            """
    }

    /// Marks the future jobs among the next `limit` pending rows as kept scheduled, in the fetch
    /// itself (so the work is bounded by the batch); a future row past that window is reached by
    /// a later fetch, at the latest by the next lease's first one.
    private var reliableJobParking: String {
        let t = table.quoted
        return """
            WITH kept AS (UPDATE \(t) SET status = 'scheduled', updated_at = \(Self.utcNow) WHERE id IN (\
            SELECT id FROM (SELECT id, payload FROM \(t) WHERE status = 'pending' AND ($3::int8 IS NULL OR id > $3::int8) \
            ORDER BY id LIMIT $2) AS next WHERE \(Self.future)) RETURNING id)
            """
    }

    /// Pending rows that are not for later, and kept scheduled rows that are due, which go to their
    /// queue at once: their `at` is taken out, as Sidekiq's scheduler pushes them.
    private var reliableJobPage: String {
        let t = table.quoted
        return """
            SELECT * FROM ((SELECT id, convert_to(payload::text, 'UTF8') AS payload, created_at, jid FROM \(t) \
            WHERE status = 'pending' AND id <> ALL($1::int8[]) AND id > \(reliableJobStart) AND \(Self.due) ORDER BY id LIMIT $2) \
            UNION ALL (SELECT id, convert_to((payload::jsonb - 'at')::text, 'UTF8'), created_at, jid FROM \(t) \
            WHERE \(Self.keptScheduled) AND id <> ALL($1::int8[]) AND id > \(reliableJobStart) AND \(Self.due) ORDER BY id LIMIT $2)) \
            AS relayable ORDER BY id LIMIT $2
            """
    }

    // MARK: status

    /// Per split key with pending rows: key, count, age in seconds of the oldest pending row.
    public var pendingSummary: SQLStatement {
        // An infinite created_at would make the subtraction fail; such rows are dead-lettered.
        let age = "extract(epoch FROM \(Self.utcNow) - min(created_at) FILTER (WHERE isfinite(created_at)))::float8"
        switch layout {
        case .res:
            return SQLStatement(
                "SELECT split_key, count(*), \(age) FROM \(table.quoted) WHERE format = $1 AND enqueued_at IS NULL GROUP BY split_key ORDER BY split_key",
                [format])
        case .reliableJob:
            return SQLStatement(
                "SELECT NULL::varchar, count(*), \(age) FROM \(table.quoted) WHERE status = 'pending' HAVING count(*) > 0")
        }
    }

    /// Per split key: the number of dead letters.
    public var deadLetterSummary: SQLStatement {
        let key = layout == .res ? "split_key" : "NULL::varchar"
        return SQLStatement("SELECT \(key), count(*) FROM \(deadLetterTable.quoted) GROUP BY 1 ORDER BY 1")
    }

    /// Every advisory lock held, by lock key: the holder's pid, application_name and address.
    public static let leaseHolders = SQLStatement(
        """
        SELECT ((l.classid::int8 << 32) | l.objid::int8)::text, a.pid, a.application_name, coalesce(host(a.client_addr), 'local') \
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
        """)

    // MARK: dead letters

    /// Dead letters in id order: id, split key (NULL where none), error, when, payload bytes.
    public func listDeadLetters(limit: Int) -> SQLStatement {
        let key = layout == .res ? "split_key" : "NULL::varchar"
        let payload = layout == .res ? "payload" : "convert_to(payload::text, 'UTF8')"
        return SQLStatement(
            """
            SELECT id, \(key), error, to_char(dead_lettered_at, 'YYYY-MM-DD"T"HH24:MI:SS.US'), \(payload) \
            FROM \(deadLetterTable.quoted) ORDER BY id LIMIT $1
            """, [String(limit)])
    }

    /// Moves dead letters (the given ids, or all when `ids` is nil) back into the outbox as
    /// pending rows with their original ids, so they are relayed again; returns the ids.
    public func retryDeadLetters(_ ids: [Int64]?) -> SQLStatement {
        let back = "DELETE FROM \(deadLetterTable.quoted) WHERE $1::int8[] IS NULL OR id = ANY($1::int8[]) RETURNING *"
        let insert: String
        switch layout {
        case .res:
            insert = """
                INSERT INTO \(table.quoted) (id, split_key, format, payload, created_at, enqueued_at) \
                SELECT id, split_key, format, payload, created_at, NULL FROM back ORDER BY id RETURNING id
                """
        case .reliableJob:
            insert = """
                INSERT INTO \(table.quoted) (id, jid, job_class, payload, status, enqueued_at, created_at, updated_at) \
                SELECT id, jid, job_class, payload, 'pending', NULL, created_at, \(Self.utcNow) FROM back ORDER BY id RETURNING id
                """
        }
        return SQLStatement("WITH back AS (\(back)) \(insert)", [ids?.postgresArrayLiteral])
    }

    /// Deletes dead letters for good; returns the ids.
    public func discardDeadLetters(_ ids: [Int64]) -> SQLStatement {
        SQLStatement("DELETE FROM \(deadLetterTable.quoted) WHERE id = ANY($1::int8[]) RETURNING id", [ids.postgresArrayLiteral])
    }

    // MARK: schema

    /// The DDL for `migrate --notify`: a statement-level trigger that, for every INSERT into the
    /// outbox, sends `NOTIFY <channel>` so a relay waiting for work wakes at once. The payload is
    /// only informative (relays read the table, not the payload): the split keys written,
    /// comma-separated, or empty when they would not fit NOTIFY's 8,000-byte limit. The trigger
    /// runs inside the application's INSERT, so nothing in it may fail that transaction: any error
    /// sends an empty payload instead, or no notification at all (relays then poll). `CREATE OR
    /// REPLACE` lets `migrate --notify` run again to update an installed trigger. The channel must
    /// be a plain identifier.
    public func notifyStatements(channel: String) -> [String] {
        let function = table.sibling(named: String((table.name + "_notify").utf8.prefix(63))!)
        let keys = layout == .res
            ? "SELECT string_agg(DISTINCT coalesce(split_key, ''), ',') INTO written_keys FROM outbox_new_rows;"
            : "written_keys := '';"
        return [
            """
            CREATE OR REPLACE FUNCTION \(function.quoted)() RETURNS trigger LANGUAGE plpgsql AS $outbox$
            DECLARE written_keys text;
            BEGIN
              BEGIN
                \(keys)
                IF octet_length(written_keys) >= 8000 THEN written_keys := ''; END IF;
                PERFORM pg_notify('\(channel)', coalesce(written_keys, ''));
              EXCEPTION WHEN OTHERS THEN
                BEGIN
                  PERFORM pg_notify('\(channel)', '');
                EXCEPTION WHEN OTHERS THEN
                  RAISE WARNING 'outbox-relay: no NOTIFY sent (%); relays will find the rows by polling', SQLERRM;
                END;
              END;
              RETURN NULL;
            END $outbox$
            """,
            "DROP TRIGGER IF EXISTS \(function.quotedName) ON \(table.quoted)",
            """
            CREATE TRIGGER \(function.quotedName) AFTER INSERT ON \(table.quoted) REFERENCING NEW TABLE AS outbox_new_rows \
            FOR EACH STATEMENT EXECUTE FUNCTION \(function.quoted)()
            """,
        ]
    }

    /// The DDL for the outbox table of the layout (as its gem's migration creates it), its indexes,
    /// the relay's partial index on pending rows, and the dead-letter table; all idempotent. This is
    /// the script for a new table; `migrate` looks at the database first (``MigrationPlan``).
    public var createStatements: [String] { MigrationPlan(queries: self).statements }

    /// The outbox table of the layout, as its gem's migration creates it, when missing.
    public var createTableStatement: String {
        switch layout {
        case .res:
            """
            CREATE TABLE IF NOT EXISTS \(table.quoted) (id bigserial PRIMARY KEY, split_key varchar NULL, \
            format varchar NOT NULL, payload bytea NOT NULL, created_at timestamp(6) NOT NULL, \
            enqueued_at timestamp(6) NULL)
            """
        case .reliableJob:
            """
            CREATE TABLE IF NOT EXISTS \(table.quoted) (id bigserial PRIMARY KEY, jid varchar NOT NULL, \
            job_class varchar NOT NULL, payload json NOT NULL, status varchar NOT NULL DEFAULT 'pending', \
            enqueued_at timestamp(6) NULL, created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL)
            """
        }
    }

    /// The dead-letter table: the outbox's columns plus `error` and `dead_lettered_at`.
    public var createDeadLetterTableStatement: String {
        """
        CREATE TABLE IF NOT EXISTS \(deadLetterTable.quoted) (LIKE \(table.quoted), error text NOT NULL, \
        dead_lettered_at timestamp(6) NOT NULL DEFAULT \(Self.utcNow), PRIMARY KEY (id))
        """
    }
}
