import OutboxRelay

/// An in-memory PostgreSQL cluster with the semantics the relay depends on: sessions per
/// database, session advisory locks that die with their session and are scoped per database,
/// transaction ids that only grow (until a restore rewinds them), and pipelined groups that each
/// commit or roll back as one transaction, whose commit may happen while its reply is lost.
final class PostgresModel {
    struct Row {
        let id: Int64
        let key: SplitKey
        let payload: [UInt8]
        /// The job's jid, unique over the run (ids are not, after a restore).
        let jid: String
        /// `created_at` as PostgreSQL's binary format has it (`Int64.max` is `infinity`).
        let postgresMicros: Int64
        var enqueued = false
        var deadLetter: String?

        var isPending: Bool { !enqueued && deadLetter == nil }
    }

    struct Database {
        var rows: [Int64: Row] = [:]
        var nextID: Int64 = 1
        var hasDeadLetterTable = true
    }

    /// The result of one statement of a group, once the group ran.
    enum Result {
        case rows([Row])
        case done
        case failed(String)
    }

    private struct Group {
        let statements: [LeaseMachine.Statement]
        let key: SplitKey
        let skipping: Set<Int64>
        var results: [Result]?
    }

    private struct Session {
        let database: Int
        var groups: [Group] = []
    }

    struct SessionLost: Error {}

    let systemIdentifier = "7311"
    private(set) var databases: [Int: Database]
    private(set) var nextXID: Int64 = 1_000
    private var sessions: [Int: Session] = [:]
    private var nextSession = 1
    private var locks: [Int: [Int64: Int]] = [:]
    private var snapshot: (databases: [Int: Database], nextXID: Int64)?
    /// Called with the rows each mark commits, so the simulation can check that Redis has them.
    var onMark: (_ database: Int, _ rows: [Row]) -> Void = { _, _ in }

    init(databases: [Int]) {
        self.databases = Dictionary(uniqueKeysWithValues: databases.map { ($0, Database()) })
    }

    // MARK: the application

    @discardableResult
    func insert(database: Int, key: SplitKey, payload: [UInt8], jid: String, postgresMicros: Int64 = 0) -> Int64 {
        let id = databases[database]!.nextID
        databases[database]!.nextID += 1
        databases[database]!.rows[id] = Row(id: id, key: key, payload: payload, jid: jid, postgresMicros: postgresMicros)
        return id
    }

    // MARK: sessions

    func connect(database: Int) -> Int {
        let id = nextSession
        nextSession += 1
        sessions[id] = Session(database: database)
        return id
    }

    func isAlive(_ session: Int) -> Bool { sessions[session] != nil }

    /// The session ends (the relay dropped it, or the network or the server did): its locks go,
    /// and each group it sent and the server has not run yet either commits (it reached the
    /// server) or not, as `commits` says.
    func end(_ session: Int, commits: (Int) -> Bool) {
        guard let ending = sessions[session] else { return }
        for (index, group) in ending.groups.enumerated() where group.results == nil {
            unrunGroups -= 1
            if commits(index) { _ = run(group, in: ending.database) }
        }
        sessions[session] = nil
        for database in locks.keys { locks[database] = locks[database]!.filter { $0.value != session } }
    }

    func endAll(commits: (Int) -> Bool) {
        for session in sessions.keys.sorted() { end(session, commits: commits) }
    }

    // MARK: statements of one round trip

    /// `pg_try_advisory_lock` and the transaction id of its statement.
    func tryLease(_ session: Int, lease: Int64) throws -> Int64? {
        let database = try live(session).database
        if let holder = locks[database]?[lease], holder != session { return nil }
        locks[database, default: [:]][lease] = session
        nextXID += 1
        return nextXID - 1
    }

    /// `pg_try_advisory_lock` of each lease in one statement: one transaction id for all.
    func tryLeases(_ session: Int, leases: [Int64]) throws -> [Int64?] {
        let database = try live(session).database
        let xid = nextXID
        nextXID += 1
        return leases.map { lease in
            if let holder = locks[database]?[lease], holder != session { return nil }
            locks[database, default: [:]][lease] = session
            return xid
        }
    }

    func releaseLease(_ session: Int, lease: Int64) throws {
        let database = try live(session).database
        if locks[database]?[lease] == session { locks[database]![lease] = nil }
    }

    func nextTransactionID(_ session: Int) throws -> Int64 {
        _ = try live(session)
        return nextXID
    }

    /// The split keys with pending rows, in key order (discovery).
    func keysWithPendingRows(_ session: Int) throws -> [SplitKey] {
        let database = try live(session).database
        var keys: [SplitKey] = []
        for row in databases[database]!.rows.values where row.isPending && !keys.contains(row.key) { keys.append(row.key) }
        return keys.sorted { ($0.value ?? "").utf8.lexicographicallyPrecedes(($1.value ?? "").utf8) }
    }

    // MARK: the pipeline

    func send(_ session: Int, _ statements: [LeaseMachine.Statement], key: SplitKey, skipping: Set<Int64>) throws {
        _ = try live(session)
        sessions[session]!.groups.append(Group(statements: statements, key: key, skipping: skipping))
        unrunGroups += 1
    }

    /// The server runs the oldest group of `session` it has not run yet, if any.
    func runNextGroup(_ session: Int) {
        guard let state = sessions[session], let index = state.groups.firstIndex(where: { $0.results == nil }) else { return }
        sessions[session]!.groups[index].results = run(state.groups[index], in: state.database)
        unrunGroups -= 1
    }

    /// Groups sent and not run yet, over all sessions.
    private(set) var unrunGroups = 0

    var sessionsWithUnrunGroups: [Int] {
        guard unrunGroups > 0 else { return [] }
        return sessions.keys.sorted().filter { sessions[$0]!.groups.contains { $0.results == nil } }
    }

    /// The next result of `session`'s pipeline, in the order sent.
    func receive(_ session: Int) throws -> Result {
        _ = try live(session)
        guard !sessions[session]!.groups.isEmpty else { return .failed("nothing was sent") }
        if sessions[session]!.groups[0].results == nil { runNextGroup(session) }
        let result = sessions[session]!.groups[0].results!.removeFirst()
        if sessions[session]!.groups[0].results!.isEmpty { sessions[session]!.groups.removeFirst() }
        return result
    }

    private func live(_ session: Int) throws -> Session {
        guard let state = sessions[session] else { throw SessionLost() }
        return state
    }

    /// Runs a group as one transaction: a failed statement rolls back the group's earlier ones,
    /// and the statements after it do not run.
    private func run(_ group: Group, in database: Int) -> [Result] {
        let before = databases[database]!
        var results: [Result] = []
        var marked: [Row] = []
        for statement in group.statements {
            if case .failed = results.last {
                results.append(.failed("not run, an earlier statement of its transaction failed"))
                continue
            }
            switch statement {
            case .fetch(let limit, let after):
                let pending = databases[database]!.rows.values
                    .filter { $0.key == group.key && $0.isPending && !group.skipping.contains($0.id) && $0.id > (after ?? Int64.min) }
                    .sorted { $0.id < $1.id }
                results.append(.rows(Array(pending.prefix(limit))))
            case .mark(let ids, _):
                for id in ids where databases[database]!.rows[id]?.isPending == true {
                    databases[database]!.rows[id]!.enqueued = true
                    marked.append(databases[database]!.rows[id]!)
                }
                results.append(.done)
            case .deadLetter(let rejections):
                guard databases[database]!.hasDeadLetterTable else {
                    results.append(.failed("relation does not exist"))
                    continue
                }
                for rejection in rejections where databases[database]!.rows[rejection.id]?.isPending == true {
                    databases[database]!.rows[rejection.id]!.deadLetter = rejection.reason
                }
                results.append(.done)
            }
        }
        if results.contains(where: { if case .failed = $0 { true } else { false } }) {
            databases[database] = before
        } else if !marked.isEmpty {
            onMark(database, marked)
        }
        return results
    }

    // MARK: faults

    func dropDeadLetterTable(database: Int) {
        databases[database]!.hasDeadLetterTable = false
    }

    /// Other applications' transactions move the cluster's transaction ids on.
    func burnTransactionIDs(_ count: Int64) {
        nextXID += count
    }

    func takeSnapshot() {
        snapshot = (databases, nextXID)
    }

    var hasSnapshot: Bool { snapshot != nil }

    /// Restores the backup: every session ends, rows and transaction ids go back to the snapshot.
    func restoreSnapshot() {
        guard let snapshot else { return }
        sessions = [:]
        unrunGroups = 0
        locks = [:]
        databases = snapshot.databases
        nextXID = snapshot.nextXID
    }
}
