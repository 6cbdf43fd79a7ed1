/// Conditions that stop the relay from working for now; it logs them and retries with backoff.
struct RelayProblem: Error, CustomStringConvertible {
    enum Kind {
        case tableMissing
        /// Another instance took the lease over: this one's PostgreSQL session must be gone.
        case fenced
        case unexpectedReply
        /// Redis would refuse a write of the relay's own keys (a key of the wrong type).
        case redisRefused
    }

    let kind: Kind
    let description: String

    static func tableMissing(_ table: String) -> RelayProblem {
        RelayProblem(
            kind: .tableMissing,
            description: "the outbox table \(table) does not exist: create it with 'outbox-relay migrate' "
                + "(or --table to name another); retrying")
    }

    static func fenced(_ detail: String) -> RelayProblem {
        RelayProblem(
            kind: .fenced,
            description: "another instance took the lease over; this batch was refused and will be relayed by it (\(detail))")
    }

    static func redisRefused(_ reason: String) -> RelayProblem {
        RelayProblem(kind: .redisRefused, description: "Redis refused the lease's fence: \(reason)")
    }

    static func unexpectedReply(_ script: String, _ reply: Any) -> RelayProblem {
        RelayProblem(kind: .unexpectedReply, description: "unexpected reply from Redis to the \(script) script: \(reply)")
    }
}
