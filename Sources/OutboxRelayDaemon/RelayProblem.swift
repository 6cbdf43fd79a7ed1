/// Conditions that stop the relay from working for now; it logs them and retries with backoff.
struct RelayProblem: Error, CustomStringConvertible {
    let description: String

    static func tableMissing(_ table: String) -> RelayProblem {
        RelayProblem(
            description: "the outbox table \(table) does not exist: create it with 'outbox-relay migrate' "
                + "(or --table to name another); retrying")
    }

    static func pushRefused(_ detail: String) -> RelayProblem {
        RelayProblem(description: "Redis refused the batch push, nothing was marked: \(detail)")
    }
}
