/// Many split keys leased together, each for one batch, so that a pass over thousands of small keys
/// pays a few round trips per group instead of seven per key: one statement takes the advisory
/// locks of the whole group, one Redis pipeline claims their fences, one statement fetches the
/// first rows of every key won, one pipeline pushes them, one statement marks them, one pipeline
/// and one statement release them.
///
/// Each key keeps its own ``LeaseMachine`` (limited to one batch), so every rule of the protocol
/// holds per key exactly as for a lease taken alone; this only runs the machines in lockstep and
/// says, step by step, which machines wait for the same kind of action, so a driver carries out
/// that action for all of them at once. Statements a machine sends run when it asks for their
/// result (one combined statement per kind, each its own transaction): a machine never assumes a
/// statement ran before it received the result. A failure of any member abandons the group, as a
/// failure abandons a lease: the next holders' claims learn what is in Redis.
public struct LeaseGroup: Sendable {
    /// What a step asks of the driver, for all the members it names.
    public enum Phase: Int, Sendable, CaseIterable, Comparable {
        case tryLease
        case claim
        case askNextTransactionID
        case fetch
        case plan
        case push
        case skip
        case deadLetter
        case mark
        case releaseRedis
        case releaseLease

        public static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }

        /// The phase an action belongs to; nil for those the group handles itself.
        init?(_ action: LeaseMachine.Action) {
            switch action {
            case .tryLease: self = .tryLease
            case .claim: self = .claim
            case .askNextTransactionID: self = .askNextTransactionID
            case .receive(.fetch): self = .fetch
            case .plan: self = .plan
            case .push: self = .push
            case .skip: self = .skip
            case .receive(.deadLetter): self = .deadLetter
            case .receive(.mark): self = .mark
            case .releaseRedis: self = .releaseRedis
            case .releaseLease: self = .releaseLease
            case .send, .finished, .abandon, .linger, .sendPushes, .receivePush: return nil
            }
        }
    }

    public enum Step: Sendable, Equatable {
        /// Carry out `phase` for these members (indexes into ``keys``), whose actions are in
        /// ``action(of:)``, and answer each with ``answer(_:_:)``.
        case perform(Phase, [Int])
        /// Every member's lease is over; outcomes in the order of ``keys``.
        case finished([LeaseMachine.Outcome])
        /// A member failed: the group is abandoned (no record released, no lock given back by the
        /// protocol; the driver drops what it holds).
        case abandon(LeaseMachine.Failure)
    }

    public let keys: [SplitKey]
    private var machines: [LeaseMachine]
    private var actions: [LeaseMachine.Action]
    private var outcomes: [LeaseMachine.Outcome?]

    /// `batchSize`: the most rows of a member's one batch. `deadLetterProblem` as for a lease.
    public init(keys: [SplitKey], batchSize: Int, deadLetterProblem: String? = nil) {
        self.keys = keys
        machines = keys.map { _ in
            LeaseMachine(tempo: LeaseTempo(maximumBatches: 1, batchSize: batchSize), deadLetterProblem: deadLetterProblem)
        }
        actions = []
        outcomes = Array(repeating: nil, count: keys.count)
        for index in machines.indices { actions.append(machines[index].start()) }
    }

    /// The action member `index` waits to have carried out.
    public func action(of index: Int) -> LeaseMachine.Action { actions[index] }

    /// Rows an earlier holder of member `index`'s key pushed (see ``LeaseMachine/alreadyPushed``).
    public func alreadyPushed(of index: Int) -> RecordedRows { machines[index].alreadyPushed }

    /// No member fetches a batch from now on; the group winds down.
    public mutating func requestStop() {
        for index in machines.indices { machines[index].requestStop() }
    }

    /// Feeds member `index` the answer to its action: `event` calls the machine's event method
    /// (for example `{ $0.fetched(ids: ids, available: n) }`) and returns its next action.
    public mutating func answer(_ index: Int, _ event: (inout LeaseMachine) -> LeaseMachine.Action) {
        actions[index] = event(&machines[index])
    }

    /// A failure of the last step: the whole group is abandoned.
    public mutating func failed(_ failure: LeaseMachine.Failure) -> Step {
        for index in machines.indices where outcomes[index] == nil { _ = machines[index].failed(failure) }
        return .abandon(failure)
    }

    /// The next step: sends are taken as done at once (their statements run when their results
    /// are asked for), finished members are set aside, and the earliest phase any member waits in
    /// is carried out for every member waiting in it.
    public mutating func nextStep() -> Step {
        var earliest: Phase?
        for index in actions.indices {
            while case .send = actions[index] { actions[index] = machines[index].sent() }
            switch actions[index] {
            case .abandon(let failure): return failed(failure)
            case .finished(let outcome): outcomes[index] = outcome
            // Members never linger: their tempo allows one batch and no wait.
            case .linger: return failed(.serverFailed("protocol error: a grouped lease asked to linger"))
            // Nor do they push without waiting: their machines are made without overlapsPushes.
            case .sendPushes, .receivePush: return failed(.serverFailed("protocol error: a grouped lease pushed without waiting"))
            default:
                if let phase = Phase(actions[index]), earliest.map({ phase < $0 }) ?? true { earliest = phase }
            }
        }
        guard let earliest else { return .finished(outcomes.map { $0! }) }
        return .perform(earliest, actions.indices.filter { outcomes[$0] == nil && Phase(actions[$0]) == earliest })
    }
}
