/// The delivery protocol of one lease on one split key, as a plain state machine: each event (a
/// server's answer) returns the one action to carry out next. No I/O, no clock and no randomness
/// live here; a driver performs the actions against PostgreSQL and Redis and feeds their answers
/// back (the daemon's `LeaseDriver`, or the simulation's models).
///
/// ```
/// tryLease ─▶ claim ─▶ fetch ─▶ ┌─ send [fetch k+1, mark k-1] ─▶ push k in chunks ─▶ receive … ─┐
///   │ held      │ fenced        └──────────────────────── fetched k+1 ◀──────────────────────────┘
///   ▼ elsewhere ▼                drained, tempo says release, refused or stop:
/// finished   nextTransactionID   receive the rest ─▶ mark the last ─▶ releaseRedis ─▶ releaseLease ─▶ finished
///            (rewound? claim again in the next epoch : fenced)
///                                drained, tempo says linger: receive the rest ─▶ linger ─▶
///                                notified: send [fetch k+1, mark k] (as above) │ quiet or stop: mark k ─▶ releaseRedis …
/// ```
///
/// A page (one fetch) is pushed in chunks of at most the batch size (``pushSize``), one push
/// transaction each, and its pushed rows are marked in one statement. With `overlapsPushes`, a
/// page's pushes go down one pipeline without waiting (``Action/sendPushes(_:fence:records:)``),
/// each refused unless the one before it landed (``RecordWrite``): the next page is received and
/// planned, and the page after it fetched, before their answers are read
/// (``Action/receivePush``); only then is the page marked and the next one pushed. A refused chunk leaves
/// itself and every later row of the key pending; the page's earlier chunks, which Redis has,
/// are marked.
///
/// The rules that keep the promise live here, where tests see them: a batch is marked only after
/// its push succeeded; the record written with a push covers every pushed row whose mark has not
/// committed (``PushLedger``), earlier chunks of the same page included; rows an earlier holder pushed are marked, never pushed again; a
/// batch Redis refuses is neither marked nor recorded; a claim or push too few replicas
/// acknowledged (`WAIT`) is never acted on; any failure abandons the lease without
/// releasing the record, so the next holder learns what is in Redis.
public struct LeaseMachine: Sendable {
    /// A pipelined statement of the lease: the driver sends a group of them as one transaction, and
    /// later receives their results in the order sent.
    public enum Statement: Sendable, Equatable {
        /// Up to `limit` pending rows after `after` (every pending row of the key when nil).
        case fetch(limit: Int, after: Int64?)
        /// Marks these rows enqueued (`scheduled`: those whose jobs went to the schedule).
        case mark(ids: [Int64], scheduled: [Int64])
        /// Moves these rows into the dead-letter table with their reasons.
        case deadLetter([BatchPlan.Rejection])

        /// Whether it only reads (a fetch of the res layout may run on another session).
        public var isFetch: Bool {
            if case .fetch = self { true } else { false }
        }

        /// `statements` split into the fetches and the rest, each in the order given: a driver
        /// with a reading session sends the fetches there and the rest on the leasing session.
        public static func split(_ statements: [Statement]) -> (fetches: [Statement], others: [Statement]) {
            (statements.filter(\.isFetch), statements.filter { !$0.isFetch })
        }
    }

    public enum Action: Sendable, Equatable {
        /// Take the advisory lock; answer with ``leaseAnswered(xid:)``.
        case tryLease
        /// Run the claim script with this transaction id; answer with ``claimAnswered(_:)``.
        case claim(xid: Int64, rewound: String?)
        /// Ask PostgreSQL for its next transaction id; answer with ``nextTransactionID(_:)``.
        case askNextTransactionID
        /// Send these statements as one pipelined transaction, without waiting; answer with ``sent()``.
        case send([Statement])
        /// Read the next pipelined result, which answers this statement; answer with ``fetched(_:)``,
        /// ``marked()`` or ``deadLettered(_:)``.
        case receive(Statement)
        /// Plan the rows of the fetch just answered (``BatchPlan``, whose rows in
        /// ``alreadyPushed`` are only marked), one plan per chunk of at most ``pushSize`` rows in
        /// row order; answer with ``planned(chunks:)`` (or ``planned(_:)`` for a single chunk).
        case plan
        /// Run the push transaction for `plan` under `fence`, recording `record`; answer with ``pushAnswered(_:)``.
        case push(BatchPlan, fence: String, record: RecordedRows)
        /// Send the push transactions of these chunks, in order (as ``push(_:fence:record:)``, each
        /// writing its record), without reading their answers, so that the next page is received
        /// and planned while Redis runs them; answer with ``pushSent()``. Their answers are read
        /// at ``receivePush``.
        case sendPushes([BatchPlan], fence: String, records: [RecordWrite])
        /// Read the answers of the pushes sent last (``sendPushes(_:fence:records:)``); answer with
        /// ``pushesAnswered(_:)``.
        case receivePush
        /// These rows can be neither relayed nor dead-lettered: pass over them; answer with ``skipped()``.
        case skip([BatchPlan.Rejection], because: String)
        /// Run the release script; answer with ``redisReleased()``.
        case releaseRedis(fence: String, remaining: RecordedRows)
        /// Give the advisory lock back; answer with ``leaseReleased()``.
        case releaseLease
        /// Keep the lease and wait a moment for a notification (the key was drained, but rows
        /// keep arriving); answer with ``lingered(notified:)``. Nothing is in flight meanwhile;
        /// the page pushed last is marked with the fetch that follows, or before the release.
        case linger
        /// The lease is over.
        case finished(Outcome)
        /// The lease is lost or its connection broken: drop it without releasing the record (the
        /// next holder's claim learns what is in Redis), and report the failure.
        case abandon(Failure)
    }

    public enum Claim: Sendable, Equatable {
        case granted(fence: String, alreadyPushed: RecordedRows)
        case fenced(newerToken: String)
        /// Redis refused the claim without writing anything (the lease's fence or record key holds
        /// the wrong type): the key waits, as one whose batch Redis refused; other keys go on.
        case refused(String)
        /// The claim ran, but fewer replicas than `--redis-wait-replicas` acknowledged it (and so
        /// the record it read): a failover could still lose what it says is in Redis.
        case unconfirmed(String)
    }

    public enum Push: Sendable, Equatable {
        case pushed
        /// Redis would refuse a write of the batch; nothing of it was written.
        case refused(String)
        /// The push ran on the master, but fewer replicas than `--redis-wait-replicas`
        /// acknowledged it within the timeout: uncertain, like a lost reply.
        case unconfirmed(String)
    }

    public enum Failure: Sendable, Equatable {
        /// Another holder's newer token was seen.
        case fenced(String)
        /// A server did not answer, or answered with an error the protocol cannot go on from.
        case serverFailed(String)
        /// Too few Redis replicas acknowledged a claim or a push (`WAIT`): its writes may be lost
        /// in a failover, so nothing of it is marked; the next claim decides.
        case unconfirmed(String)
    }

    /// Rows that arrived for a fetch, planned for Redis by the driver (``BatchPlan``, whose rows
    /// in ``alreadyPushed`` are only marked), and how many were pending within the fetch's limit.
    public struct Fetched: Sendable, Equatable {
        public let ids: [Int64]
        public let plan: BatchPlan
        public let available: Int

        public init(ids: [Int64], plan: BatchPlan, available: Int) {
            self.ids = ids
            self.plan = plan
            self.available = available
        }
    }

    public struct Outcome: Sendable, Equatable {
        /// Rows fetched (relayed or rejected) and jobs marked enqueued.
        public var handled = 0
        public var relayed = 0
        /// Why Redis refused the lease's last batch, if it did: that batch stays pending.
        public var refused: String?
        /// The batch size to start the key's next lease at, when it still has a backlog.
        public var carriedLimit: Int?
        /// False when another instance held the lease.
        public var leased = true
        /// The fence this lease pushed under, and the rewound fence it started a new epoch from.
        public var fence: String?
        public var rewoundFrom: String?
        /// Rows an earlier holder pushed without marking, which this lease marked.
        public var inherited = 0

        public init(handled: Int = 0, relayed: Int = 0) {
            self.handled = handled
            self.relayed = relayed
        }
    }

    private enum State: Sendable, Equatable {
        case initial
        case leasing
        case claiming(xid: Int64, rewound: String?)
        case checkingRewind(xid: Int64, seen: String)
        /// Relaying: the sub-state lives in the stored properties below.
        case relaying(Step)
        case releasingRedis
        case releasingLease
        case done
    }

    private enum Step: Sendable, Equatable {
        /// Waiting for the answer to an action that takes one (fetch, receive, push, skip).
        case awaiting
        /// The group sent before the push; the plan goes to Redis next.
        case sentBeforePush
        /// Waiting for the driver's plan of the rows fetched last.
        case planning
        /// Waiting for the driver to send pushes without reading their answers.
        case sendingPush
        /// A refused push: the results in flight are received and discarded, no more fetches.
        case draining
        /// The lease's last mark, sent once every result is in.
        case finalMark
        /// Waiting for a notification, nothing in flight; the last page's mark waits in `unmarked`.
        case lingering
    }

    /// Rows whose jobs Redis has, to mark in one statement.
    private struct Marks: Sendable, Equatable {
        var ids: [Int64] = []
        var scheduled: [Int64] = []
    }

    /// Why rows cannot be dead-lettered during this lease (the table is missing), if they cannot.
    private let deadLetterProblem: String?
    private var state: State = .initial
    private var stopRequested = false
    private var tempo: LeaseTempo
    private var outcome = Outcome()
    private var fence = ""
    public private(set) var ledger = PushLedger(alreadyPushed: [])
    /// Rows an earlier holder pushed and perhaps did not mark: marked, never pushed again.
    public private(set) var alreadyPushed: RecordedRows = []
    private var lastID: Int64?
    /// The page pushed last, whose mark is not sent yet.
    private var unmarked: Marks?
    /// The chunks of the page fetched last that are not pushed yet (nil: not planned yet).
    private var chunks: [BatchPlan]?
    /// The chunks of the page in hand that Redis has, or that had nothing to push.
    private var pageDone: [BatchPlan] = []
    /// Whether the tempo said to linger once the page in hand is marked.
    private var lingerNext = false
    /// Results in flight, in the order they will arrive.
    private var expected: [Statement] = []
    /// Whether a page's pushes may be sent without waiting (``Action/sendPushes(_:fence:records:)``).
    private let overlapsPushes: Bool
    /// The page's chunks whose pushes were sent without waiting (in order, with those that had
    /// nothing to push), and the page's chunks Redis already has: nothing of that page is marked
    /// or recorded as pushed before their answers.
    private var pushInFlight: (chunks: [BatchPlan], page: [BatchPlan])?
    /// The rows of the page fetched while a push was in flight (as counted in
    /// ``Outcome/handled``): that page is pushed only once the push is answered.
    private var heldPage: Int?

    /// `overlapsPushes`: a page's pushes are sent without waiting, and their answers read once
    /// the next page is received and planned (the daemon's single leases); otherwise every push is
    /// answered before anything else happens.
    public init(tempo: LeaseTempo, deadLetterProblem: String? = nil, overlapsPushes: Bool = false) {
        self.tempo = tempo
        self.deadLetterProblem = deadLetterProblem
        self.overlapsPushes = overlapsPushes
    }

    /// The most rows per push: the driver plans each page in chunks of this many rows.
    public var pushSize: Int { tempo.batchSize }

    // MARK: events

    public mutating func start() -> Action {
        precondition(state == .initial, "a lease machine starts once")
        state = .leasing
        return .tryLease
    }

    /// From now on no batch is fetched; the batch in hand is finished and the lease released.
    public mutating func requestStop() {
        stopRequested = true
    }

    public mutating func leaseAnswered(xid: Int64?) -> Action {
        guard case .leasing = state else { return unexpected("lease answer") }
        guard let xid else {
            state = .done
            outcome.leased = false
            return .finished(outcome)
        }
        state = .claiming(xid: xid, rewound: nil)
        return .claim(xid: xid, rewound: nil)
    }

    public mutating func claimAnswered(_ claim: Claim) -> Action {
        guard case .claiming(let xid, let rewound) = state else { return unexpected("claim answer") }
        switch claim {
        case .granted(let fence, let pushed):
            self.fence = fence
            alreadyPushed = pushed
            ledger = PushLedger(alreadyPushed: pushed)
            outcome.fence = fence
            outcome.rewoundFrom = rewound
            outcome.inherited = pushed.count
            if stopRequested { return release() }
            state = .relaying(.awaiting)
            expected = [.fetch(limit: tempo.limit, after: nil)]
            return .send(expected)
        case .unconfirmed(let why):
            return abandon(.unconfirmed(why))
        case .refused(let why):
            // Nothing was claimed, so nothing is released in Redis.
            outcome.refused = why
            state = .releasingLease
            return .releaseLease
        case .fenced(let newer) where FencedPush.xid(inFence: newer) == nil:
            // Not a fence the relay wrote (someone set the key by hand): this key waits, as one
            // Redis refused, instead of taking the lease for lost.
            outcome.refused = "the lease's fence key holds '\(newer)', which is not a fence (<epoch>:<xid>); delete that key"
            state = .releasingLease
            return .releaseLease
        case .fenced(let newer):
            guard rewound == nil else { return abandon(.fenced("token \(xid) is older than \(newer)")) }
            state = .checkingRewind(xid: xid, seen: newer)
            return .askNextTransactionID
        }
    }

    /// The cluster's next transaction id, asked on the session holding the lock: a fence at or
    /// above it was never handed out by this database's history (a restore or a promotion rewound
    /// it), so this holder starts the next epoch from exactly that fence; otherwise it is fenced.
    public mutating func nextTransactionID(_ next: Int64) -> Action {
        guard case .checkingRewind(let xid, let seen) = state else { return unexpected("next transaction id") }
        guard let seenXID = FencedPush.xid(inFence: seen), seenXID >= next else {
            return abandon(.fenced("token \(xid) is older than \(seen)"))
        }
        state = .claiming(xid: xid, rewound: seen)
        return .claim(xid: xid, rewound: seen)
    }

    /// Rows arrived for a fetch whose plan is already made (see ``fetched(ids:available:)``).
    public mutating func fetched(_ batch: Fetched) -> Action {
        let action = fetched(ids: batch.ids, available: batch.available)
        if action == .plan { return planned(batch.plan) }
        if case .relaying(.sentBeforePush) = state { chunks = [batch.plan] }
        return action
    }

    /// Rows `ids` arrived for a fetch, `available` of them pending within its limit. The next
    /// fetch and the previous mark go to PostgreSQL first (``Action/send(_:)``), and only then
    /// does the driver plan the batch (``Action/plan``), so PostgreSQL works meanwhile.
    public mutating func fetched(ids: [Int64], available: Int) -> Action {
        guard case .relaying(let step) = state, step == .awaiting || step == .draining, case .fetch = expected.first else {
            return unexpected("fetched rows")
        }
        expected.removeFirst()
        if step == .draining { return next() }
        // No rows and none available: nothing is pending. No rows but some available (a group's
        // fetch cut at its byte limit before this key): nothing is known, so the rows an earlier
        // holder pushed stay recorded, and the lease ends without a batch.
        ledger.fetched(ids, after: lastID, drained: ids.isEmpty && available == 0)
        guard let last = ids.last else {
            lingerNext = tempo.afterEmptyFetch() == .linger
            return next()
        }
        lastID = last
        outcome.handled += ids.count
        let tempoNext = tempo.afterBatch(available: available)
        let fetchAgain = tempoNext == .fetchAgain && !stopRequested
        lingerNext = tempoNext == .linger
        outcome.carriedLimit = tempo.leftBacklog ? tempo.limit : nil
        if pushInFlight != nil {
            // The previous page's mark needs its push's answer, and this page is pushed after it:
            // the next fetch goes to PostgreSQL now, this page is planned, and the previous page's
            // mark follows once that answer is in.
            heldPage = ids.count
            chunks = nil
            guard fetchAgain else {
                state = .relaying(.planning)
                return .plan
            }
            let fetch = Statement.fetch(limit: tempo.limit, after: last)
            expected.append(fetch)
            state = .relaying(.sentBeforePush)
            return .send([fetch])
        }
        var group: [Statement] = []
        if fetchAgain { group.append(.fetch(limit: tempo.limit, after: last)) }
        if let marks = unmarked.take(), !marks.ids.isEmpty {
            group.append(.mark(ids: marks.ids, scheduled: marks.scheduled))
        }
        chunks = nil
        pageDone = []
        guard !group.isEmpty else {
            state = .relaying(.planning)
            return .plan
        }
        expected += group
        state = .relaying(.sentBeforePush)
        return .send(group)
    }

    /// The plan of the rows fetched last (``Action/plan``), as one chunk.
    public mutating func planned(_ plan: BatchPlan) -> Action {
        planned(chunks: [plan])
    }

    /// The plans of the rows fetched last (``Action/plan``): consecutive chunks in row order,
    /// each of at most ``pushSize`` rows. They are pushed one by one, in order.
    public mutating func planned(chunks: [BatchPlan]) -> Action {
        guard case .relaying(.planning) = state else { return unexpected("planned") }
        self.chunks = chunks
        return pushInFlight == nil ? pushNextChunk() : receivePush()
    }

    /// The page in hand is planned: the answer of the push in flight comes before its pushes.
    private mutating func receivePush() -> Action {
        state = .relaying(.awaiting)
        return .receivePush
    }

    /// The driver sent the pushes of the last ``Action/sendPushes(_:fence:records:)``.
    public mutating func pushSent() -> Action {
        guard case .relaying(.sendingPush) = state, pushInFlight != nil else { return unexpected("push sent") }
        state = .relaying(.awaiting)
        return next()
    }

    /// The driver sent the group of the last ``Action/send(_:)``.
    public mutating func sent() -> Action {
        switch state {
        case .relaying(.sentBeforePush):
            guard chunks != nil else {
                state = .relaying(.planning)
                return .plan
            }
            return pushInFlight == nil ? pushNextChunk() : receivePush()
        case .relaying(.finalMark): return next()
        case .relaying(.awaiting): return next()
        default: return unexpected("sent")
        }
    }

    public mutating func pushAnswered(_ push: Push) -> Action {
        guard case .relaying(.awaiting) = state, pushInFlight == nil, let chunk = chunks?.first else { return unexpected("push answer") }
        switch push {
        case .pushed:
            chunks?.removeFirst()
            ledger.pushed(chunk)
            pageDone.append(chunk)
            return pushNextChunk()
        case .refused(let reason):
            // Nothing of the chunk reached Redis: it stays pending, and so does the rest of the
            // key, to keep its order. The page's earlier chunks are in Redis (and in the ledger):
            // they are marked, as are the marks in flight.
            outcome.refused = reason
            outcome.carriedLimit = nil
            lingerNext = false
            chunks = nil
            unmarked = Self.marks(of: pageDone)
            pageDone = []
            state = .relaying(.draining)
            return next()
        case .unconfirmed(let why):
            // Not marked and not in the ledger: whether Redis keeps the batch is decided by the
            // next holder's claim, once replicas acknowledged what it read.
            return abandon(.unconfirmed(why))
        }
    }

    /// The answers of the pushes sent without waiting (``Action/sendPushes(_:fence:records:)``),
    /// in order: only now is their page marked (with the next fetch, when a page is held back) and
    /// the held page pushed. After a refused push, every later one of the page was refused too
    /// (it runs only if the one before it landed).
    public mutating func pushesAnswered(_ pushes: [Push]) -> Action {
        guard case .relaying(.awaiting) = state, let flight = pushInFlight.take(),
            pushes.count == flight.chunks.count(where: { !$0.pushedIDs.isEmpty })
        else { return unexpected("push answers") }
        var answers = pushes[...]
        var landed = flight.page
        var refusal: String?
        for chunk in flight.chunks {
            guard !chunk.pushedIDs.isEmpty else {
                if refusal == nil { landed.append(chunk) }
                continue
            }
            switch answers.removeFirst() {
            case .pushed:
                if refusal != nil { return abandon(.serverFailed("Redis took a push after refusing the one before it")) }
                ledger.pushed(chunk)
                landed.append(chunk)
            case .refused(let reason):
                if refusal == nil { refusal = reason }
            case .unconfirmed(let why):
                return abandon(.unconfirmed(why))
            }
        }
        // Pages pushed without waiting have no rejections (see pushNextChunk()).
        unmarked = Self.marks(of: landed)
        if let reason = refusal {
            // As a refused push in hand (see pushAnswered(_:)); the held page stays pending.
            if let held = heldPage.take() { outcome.handled -= held }
            outcome.refused = reason
            outcome.carriedLimit = nil
            lingerNext = false
            chunks = nil
            pageDone = []
            state = .relaying(.draining)
            return next()
        }
        guard heldPage.take() != nil else { return next() }
        guard let marks = unmarked.take(), !marks.ids.isEmpty else { return pushNextChunk() }
        let mark = Statement.mark(ids: marks.ids, scheduled: marks.scheduled)
        expected.append(mark)
        state = .relaying(.sentBeforePush)
        return .send([mark])
    }

    public mutating func marked() -> Action {
        guard case .relaying = state, case .mark(let ids, _) = expected.first else { return unexpected("mark") }
        expected.removeFirst()
        ledger.marked(ids)
        outcome.relayed += ids.count
        return next()
    }

    public enum DeadLettered: Sendable, Equatable {
        case moved
        /// The rows could not be moved (the table is missing): they stay pending and are skipped.
        case failed(String)
    }

    public mutating func deadLettered(_ result: DeadLettered) -> Action {
        guard case .relaying = state, case .deadLetter(let rejections) = expected.first else { return unexpected("dead letters") }
        expected.removeFirst()
        if case .failed(let reason) = result { return .skip(rejections, because: reason) }
        return next()
    }

    /// The driver passed over the rows of the last ``Action/skip(_:because:)``.
    public mutating func skipped() -> Action {
        guard case .relaying = state else { return unexpected("skipped") }
        return next()
    }

    /// The driver waited for a notification (``Action/linger``): with one, the key is fetched
    /// again at once; without one (or once a stop is requested) the lease is released.
    public mutating func lingered(notified: Bool) -> Action {
        guard case .relaying(.lingering) = state else { return unexpected("lingered") }
        state = .relaying(.awaiting)
        guard notified, !stopRequested else { return next() }
        // As in a backlog: the next fetch and the last page's mark go as one group.
        expected = [.fetch(limit: tempo.limit, after: lastID)]
        if let marks = unmarked.take(), !marks.ids.isEmpty { expected.append(.mark(ids: marks.ids, scheduled: marks.scheduled)) }
        return .send(expected)
    }

    public mutating func redisReleased() -> Action {
        guard case .releasingRedis = state else { return unexpected("Redis release") }
        state = .releasingLease
        return .releaseLease
    }

    public mutating func leaseReleased() -> Action {
        guard case .releasingLease = state else { return unexpected("lease release") }
        state = .done
        return .finished(outcome)
    }

    /// A server failed to answer an action (connection lost, timeout, an error reply), or the
    /// push was fenced: the lease is abandoned.
    public mutating func failed(_ failure: Failure) -> Action {
        abandon(failure)
    }

    /// Whether pipelined results are still in flight (the driver drains them after a failure).
    public var isAwaitingResults: Bool { !expected.isEmpty }

    /// Whether pushes were sent whose answers are not read (the driver drains them after a failure).
    public var isAwaitingPush: Bool { pushInFlight != nil }

    // MARK: transitions

    /// The push of the page's next chunk with something to push (each recorded with every
    /// pushed, unmarked row), or, once every chunk is in Redis, what follows the page. With
    /// `overlapsPushes`, the rest of the page goes as one pipeline of pushes instead, unless a row
    /// of it waits for the dead-letter table.
    private mutating func pushNextChunk() -> Action {
        state = .relaying(.awaiting)
        while let chunk = chunks?.first {
            if !chunk.pushedIDs.isEmpty {
                let rest = chunks ?? []
                let overlaps = overlapsPushes && !stopRequested
                    && rest.allSatisfy(\.rejections.isEmpty) && pageDone.allSatisfy(\.rejections.isEmpty)
                guard overlaps else { return .push(chunk, fence: fence, record: ledger.record(pushing: chunk)) }
                return sendPushes(rest)
            }
            chunks?.removeFirst()
            pageDone.append(chunk)
        }
        chunks = nil
        return afterPage()
    }

    /// The pushes of `rest`, the page's chunks not pushed yet, sent as one pipeline: the first
    /// writes the whole record, each later one appends its rows, and runs only if the one before
    /// it landed.
    private mutating func sendPushes(_ rest: [BatchPlan]) -> Action {
        var sent: [BatchPlan] = []
        var records: [RecordWrite] = []
        for chunk in rest where !chunk.pushedIDs.isEmpty {
            if let before = sent.last {
                records.append(.append(pushed: chunk.pushedRows, after: before.pushedRows))
            } else {
                records.append(.replace(earlier: ledger.unmarked, pushed: chunk.pushedRows))
            }
            sent.append(chunk)
        }
        pushInFlight = (rest, pageDone)
        pageDone = []
        chunks = nil
        state = .relaying(.sendingPush)
        return .sendPushes(sent, fence: fence, records: records)
    }

    /// After every chunk of the page is in Redis (or had nothing to push): its mark waits for the
    /// next round, its bad rows go to the dead-letter table (or are skipped).
    private mutating func afterPage() -> Action {
        let page = pageDone
        pageDone = []
        unmarked = Self.marks(of: page)
        let rejections = page.flatMap(\.rejections)
        guard !rejections.isEmpty else { return next() }
        if let deadLetterProblem { return .skip(rejections, because: deadLetterProblem) }
        expected.append(.deadLetter(rejections))
        return .send([.deadLetter(rejections)])
    }

    private static func marks(of chunks: [BatchPlan]) -> Marks {
        chunks.count == 1
            ? Marks(ids: chunks[0].markIDs, scheduled: chunks[0].scheduledIDs)
            : Marks(ids: chunks.flatMap(\.markIDs), scheduled: chunks.flatMap(\.scheduledIDs))
    }

    /// The next result to receive, or, with none in flight, a linger, the last mark, or the end
    /// of the lease.
    private mutating func next() -> Action {
        // With a push in flight, the results before the next page come first; then its answer.
        if pushInFlight != nil, heldPage != nil || expected.isEmpty { return .receivePush }
        if let first = expected.first { return .receive(first) }
        if lingerNext, !stopRequested {
            lingerNext = false
            state = .relaying(.lingering)
            return .linger
        }
        lingerNext = false
        if let marks = unmarked.take(), !marks.ids.isEmpty {
            let mark = Statement.mark(ids: marks.ids, scheduled: marks.scheduled)
            expected = [mark]
            state = .relaying(.finalMark)
            return .send([mark])
        }
        return release()
    }

    private mutating func release() -> Action {
        state = .releasingRedis
        return .releaseRedis(fence: fence, remaining: ledger.remaining)
    }

    private mutating func abandon(_ failure: Failure) -> Action {
        state = .done
        return .abandon(failure)
    }

    private mutating func unexpected(_ event: String) -> Action {
        abandon(.serverFailed("protocol error: \(event) in state \(state)"))
    }
}
