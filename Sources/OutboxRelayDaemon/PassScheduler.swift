import Logging
import OutboxRelay
import OutboxRelayIO

/// One pass over the split keys: finds the keys with pending rows, and leases each in turn (one
/// key further on every pass, so instances share keys), skipping keys whose last batch Redis
/// refused until their backoff is over. Keeps what passes carry over: the rows skipped, each key's
/// batch size, and the refused keys.
struct PassScheduler {
    /// What the scheduler needs to know of the configuration.
    struct Settings {
        var queries: OutboxQueries
        /// Configured split keys; nil to discover them.
        var splitKeys: [SplitKey]?
        var hasSplitKeys: Bool
        /// The most keys leased together (``LeaseGroup``), in passes over at least
        /// ``groupThreshold`` keys; 1 leases every key alone.
        var groupSize = 1
    }

    /// Passes over fewer keys lease each alone: a group saves round trips only across many keys.
    static let groupThreshold = 8
    /// The most groups' worth of keys handed to `leaseGroup` at once (it keeps two groups in
    /// flight); between calls the watchdog is pinged.
    static let groupsPerCall = 16

    struct Outcome {
        /// Whether any lease had rows to handle (else the relay sleeps).
        var worked = false
        var relayed = 0
        var keysWithWork = 0
    }

    private let settings: Settings
    private let logger: Logger
    private var skipped = SkippedRows()
    private var refusedKeys = RefusedKeys()
    /// Per key, the batch size a lease reached when it let go of a key that still had a backlog.
    private var tempos: [SplitKey: Int] = [:]
    private var rotation: KeyRotation
    /// Passes left before discovery reads a page of pending rows again (see ``discoverInPage(_:)``).
    private var passesUntilPage = 0
    /// Split keys found that are not valid UTF-8, already reported.
    private var unreadableKeys: Set<[UInt8]> = []

    /// `rotationStart`: where the first pass starts (the process id, so instances start apart).
    init(settings: Settings, logger: Logger, rotationStart: Int) {
        self.settings = settings
        self.logger = logger
        rotation = KeyRotation(start: rotationStart)
    }

    /// Runs one pass; `lease` relays one key under a lease, `leaseGroup` the first batch of each of
    /// several keys in ``LeaseGroup``s of up to `groupSize` keys (outcomes in their order), `between` runs after each
    /// lease or group. Keys of a group that still have rows pending are then leased alone.
    mutating func pass(
        postgres: PostgresConnection, nowMicros: Int64, isStopRequested: () -> Bool,
        lease: (SplitKey, inout SkippedRows, inout [SplitKey: Int]) throws -> LeaseMachine.Outcome,
        leaseGroup: ([SplitKey], inout SkippedRows, inout [SplitKey: Int]) throws -> [LeaseMachine.Outcome] = { _, _, _ in [] },
        between: () -> Void
    ) throws -> Outcome {
        skipped.expire(nowMicros: nowMicros)
        let keys = try keysWithWork(postgres)
        var outcome = Outcome(keysWithWork: keys.count)
        // Each key once: a key leased twice in one group would be pushed twice.
        var seen = Set<SplitKey>()
        let ready = rotation.order(keys).filter { !refusedKeys.isWaiting($0, nowMicros: nowMicros) && seen.insert($0).inserted }
        let grouping = settings.groupSize > 1 && ready.count >= Self.groupThreshold
        var next = 0
        while next < ready.count && !isStopRequested() {
            var members: [SplitKey] = []
            while grouping, members.count < settings.groupSize * Self.groupsPerCall, next < ready.count, isGroupable(ready[next]) {
                members.append(ready[next])
                next += 1
            }
            if members.count < 2 {
                if members.isEmpty {
                    members = [ready[next]]
                    next += 1
                }
                record(try lease(members[0], &skipped, &tempos), key: members[0], into: &outcome, nowMicros: nowMicros)
                between()
                continue
            }
            let outcomes = try leaseGroup(members, &skipped, &tempos)
            between()
            for (key, leased) in zip(members, outcomes) {
                record(leased, key: key, into: &outcome, nowMicros: nowMicros)
                // Its one batch left rows behind: the key is leased alone, for as many batches as a lease takes.
                if leased.carriedLimit != nil, !isStopRequested() {
                    record(try lease(key, &skipped, &tempos), key: key, into: &outcome, nowMicros: nowMicros)
                    between()
                }
            }
        }
        return outcome
    }

    /// Whether `key` can join a group: a named key with no rows skipped and no backlog carried
    /// over (a key known to be busy is leased alone, for many batches).
    private func isGroupable(_ key: SplitKey) -> Bool {
        key != .null && skipped.ids(for: key).isEmpty && tempos[key] == nil
    }

    private mutating func record(_ leased: LeaseMachine.Outcome, key: SplitKey, into outcome: inout Outcome, nowMicros: Int64) {
        outcome.relayed += leased.relayed
        if let reason = leased.refused {
            refused(key, reason: reason, nowMicros: nowMicros)
        } else if leased.handled > 0 {
            outcome.worked = true
            if refusedKeys.relayed(key) != nil {
                logger.info("Redis takes the split key's batches again", metadata: ["outbox.split_key": "\(key)"])
            }
        }
    }

    /// Redis refused a batch of `key`: it stays pending, and the key waits (``RefusedKeys``).
    private mutating func refused(_ key: SplitKey, reason: String, nowMicros: Int64) {
        let metadata: Logger.Metadata = ["outbox.split_key": "\(key)"]
        let message = "Redis refused a batch of the split key, which stays pending and is retried with backoff: \(reason)"
        if refusedKeys.refused(key, reason: reason, nowMicros: nowMicros) {
            logger.error("\(message)", metadata: metadata)
        } else {
            logger.debug("\(message)", metadata: metadata)
        }
    }

    /// The keys that may have pending rows: found by discovery, or the configured keys that do,
    /// each in one indexed query.
    private mutating func keysWithWork(_ postgres: PostgresConnection) throws -> [SplitKey] {
        let discovering = settings.hasSplitKeys && settings.splitKeys == nil
        var rows = try discovering ? discoverInPage(postgres) : nil
        if rows == nil {
            rows = try postgres.query(
                discovering ? settings.queries.discoverKeys : settings.queries.keysWithPendingRows(among: settings.splitKeys ?? [.null]))
        }
        return keys(in: rows!)
    }

    /// Pending rows read to find their keys: a small page first, and a large one when the small
    /// one found few rows per key; past that, the pass falls back to one probe per key.
    static let discoveryPages = (small: 4_000, large: 200_000)
    /// The most rows per key, on average, for which a large page is cheaper than the probes (an
    /// index entry costs about a thirtieth of a probe).
    static let rowsPerKeyForLargePage = 25
    /// Passes that discover by probes after the pages found more pending rows than they read.
    static let passesBetweenPages = 10

    /// The keys of all pending rows when they fit in a page of the pending-rows index, else nil
    /// (then the next ``passesBetweenPages`` passes do not try). A backlog on few keys costs one
    /// small page (about 1.5 ms) every ``passesBetweenPages`` passes; many keys with few rows
    /// each are found for a fraction of one probe per key.
    private mutating func discoverInPage(_ postgres: PostgresConnection) throws -> PostgresRows? {
        if passesUntilPage > 0 {
            passesUntilPage -= 1
            return nil
        }
        let small = try postgres.query(settings.queries.discoverKeys(scanningAtMost: Self.discoveryPages.small))
        if Self.scanned(small) < Self.discoveryPages.small { return small }
        if small.count * Self.rowsPerKeyForLargePage >= Self.discoveryPages.small {
            let large = try postgres.query(settings.queries.discoverKeys(scanningAtMost: Self.discoveryPages.large))
            if Self.scanned(large) < Self.discoveryPages.large { return large }
        }
        passesUntilPage = Self.passesBetweenPages
        return nil
    }

    private static func scanned(_ rows: PostgresRows) -> Int {
        (0..<rows.count).reduce(0) { $0 + Int(rows.int64($1, 1) ?? 0) }
    }

    private mutating func keys(in rows: PostgresRows) -> [SplitKey] {
        return (0..<rows.count).compactMap { row in
            guard let bytes = rows.bytes(row, 0) else { return .null }
            guard let key = String(validating: bytes, as: UTF8.self) else {
                // Only a SQL_ASCII database stores such a key; it cannot be named in a statement.
                if unreadableKeys.insert(bytes).inserted {
                    logger.error(
                        "a split key is not valid UTF-8, so its rows cannot be relayed: store split keys as UTF-8 text (the database's encoding may be SQL_ASCII)",
                        metadata: ["outbox.split_key_hex": "\(bytes.map { String(format: "%02x", $0) }.joined())"])
                }
                return nil
            }
            return .named(key)
        }
    }
}
