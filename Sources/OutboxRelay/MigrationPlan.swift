/// An index a layout wants on its outbox table: the columns (and condition) that make some query
/// of the relay, or of the layout's gem, an index scan.
public struct OutboxIndex: Sendable, Equatable {
    /// The name `migrate` gives it: the table's name plus this.
    public let suffix: String
    public let columns: [String]
    /// The `WHERE` of a partial index, as written in `CREATE INDEX`.
    public let predicate: String?
    /// The same condition as PostgreSQL prints it back (`pg_get_expr`), to recognise it.
    public let printedPredicate: String?

    public init(suffix: String, columns: [String], predicate: String? = nil, printedPredicate: String? = nil) {
        self.suffix = suffix
        self.columns = columns
        self.predicate = predicate
        self.printedPredicate = printedPredicate
    }
}

/// An index that exists on the table, as `pg_index` describes it.
public struct ExistingIndex: Sendable, Equatable {
    public let name: String
    /// The key columns in order; an expression column is an empty string.
    public let columns: [String]
    /// The `WHERE` of a partial index as PostgreSQL prints it, or nil.
    public let predicate: String?
    public let unique: Bool
    /// False for the leftover of a `CREATE INDEX CONCURRENTLY` that failed: it is not used.
    public let valid: Bool
    public let method: String

    public init(name: String, columns: [String], predicate: String?, unique: Bool, valid: Bool, method: String) {
        self.name = name
        self.columns = columns
        self.predicate = predicate
        self.unique = unique
        self.valid = valid
        self.method = method
    }

    /// Whether this index does the job of `wanted`, whatever its name: a valid B-tree on the same
    /// columns in the same order with the same condition (a unique one serves a plain one too).
    public func serves(_ wanted: OutboxIndex) -> Bool {
        valid && method == "btree" && columns == wanted.columns && Self.normalized(predicate) == Self.normalized(wanted.printedPredicate)
    }

    /// A condition without spaces and parentheses, which PostgreSQL adds when it prints one.
    static func normalized(_ predicate: String?) -> String? {
        predicate.map { String($0.lowercased().filter { $0 != " " && $0 != "(" && $0 != ")" }) }
    }
}

/// What `migrate` runs on a database: the table when missing, each wanted index unless an
/// equivalent one exists under whatever name (the gem's own, say), and the dead-letter table.
/// On a table that already has rows, indexes are built with `CREATE INDEX CONCURRENTLY`, which
/// lets the app's inserts go on meanwhile but cannot run inside a transaction.
public struct MigrationPlan: Sendable {
    /// What `migrate` found on the database.
    public struct State: Sendable {
        public var tableExists: Bool
        public var hasRows: Bool
        public var indexes: [ExistingIndex]

        public init(tableExists: Bool, hasRows: Bool, indexes: [ExistingIndex]) {
            self.tableExists = tableExists
            self.hasRows = hasRows
            self.indexes = indexes
        }
    }

    public private(set) var statements: [String] = []
    /// Wanted indexes served by an existing one with another name: (existing name, columns).
    public private(set) var reused: [(name: String, columns: [String])] = []
    /// Whether any statement must run outside a transaction block.
    public private(set) var concurrently = false

    /// The plan for `state`; without one (no database to look at), the script for a new table.
    public init(queries: OutboxQueries, state: State? = nil) {
        let table = queries.table
        let build = state.map { $0.tableExists && $0.hasRows } ?? false
        statements.append(queries.createTableStatement)
        for wanted in queries.indexes {
            let name = table.sibling(named: String((table.name + wanted.suffix).utf8.prefix(63))!)
            if let existing = state?.indexes.first(where: { $0.serves(wanted) }) {
                if existing.name != name.name { reused.append((existing.name, wanted.columns)) }
                continue
            }
            if let broken = state?.indexes.first(where: { $0.name == name.name && !$0.valid }) {
                // A failed concurrent build leaves an invalid index that IF NOT EXISTS would keep.
                statements.append("DROP INDEX \(build ? "CONCURRENTLY " : "")IF EXISTS \(table.sibling(named: broken.name).quoted)")
            }
            let condition = wanted.predicate.map { " WHERE \($0)" } ?? ""
            statements.append(
                "CREATE INDEX \(build ? "CONCURRENTLY " : "")IF NOT EXISTS \(name.quotedName) ON \(table.quoted) (\(wanted.columns.joined(separator: ", ")))\(condition)")
            concurrently = concurrently || build
        }
        statements.append(queries.createDeadLetterTableStatement)
    }
}

extension OutboxQueries {
    /// The indexes of the layout: the gem's own (by columns) and the relay's on pending rows.
    public var indexes: [OutboxIndex] {
        switch layout {
        case .res:
            [
                OutboxIndex(suffix: "_format_enqueued_split", columns: ["format", "enqueued_at", "split_key"]),
                OutboxIndex(suffix: "_created_enqueued", columns: ["created_at", "enqueued_at"]),
                OutboxIndex(
                    suffix: "_pending", columns: ["format", "split_key", "id"], predicate: "enqueued_at IS NULL",
                    printedPredicate: "(enqueued_at IS NULL)"),
            ]
        case .reliableJob:
            [
                OutboxIndex(suffix: "_jid", columns: ["jid"]),
                OutboxIndex(
                    suffix: "_pending", columns: ["id"], predicate: "status = 'pending'",
                    printedPredicate: "((status)::text = 'pending'::text)"),
                // The future jobs the relay keeps in the table until they are due.
                OutboxIndex(
                    suffix: "_scheduled", columns: ["id"], predicate: "status = 'scheduled' AND enqueued_at IS NULL",
                    printedPredicate: "(((status)::text = 'scheduled'::text) AND (enqueued_at IS NULL))"),
            ]
        }
    }

    /// Whether the table exists: one boolean.
    public var tableExists: SQLStatement {
        SQLStatement("SELECT to_regclass($1) IS NOT NULL", [table.quoted])
    }

    /// Whether the (existing) table has a row: one boolean.
    public var tableHasRows: SQLStatement {
        SQLStatement("SELECT EXISTS (SELECT 1 FROM \(table.quoted))")
    }

    /// The table's indexes: name, unique, valid, access method, condition (NULL for a full index)
    /// and the key columns separated by U+001F (an expression as an empty name).
    public var existingIndexes: SQLStatement {
        SQLStatement(
            """
            SELECT c.relname, i.indisunique, i.indisvalid, am.amname, pg_get_expr(i.indpred, i.indrelid), \
            array_to_string(ARRAY(SELECT coalesce(a.attname, '') FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0 ORDER BY k.n), chr(31)) \
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
            WHERE i.indrelid = to_regclass($1) ORDER BY c.relname
            """, [table.quoted])
    }
}
