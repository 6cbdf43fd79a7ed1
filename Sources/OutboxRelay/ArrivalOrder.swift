/// Which server's answer the group driver reads next, when it has asked both PostgreSQL and Redis
/// and waits for them: blocking on one while the other's answer waits would leave that server
/// idle, and the driver too.
///
/// A server whose answer has arrived comes first (Redis before PostgreSQL when both have); with
/// only one asked, that one (its read blocks until the answer, or its timeout). With both asked
/// and neither answering, the driver waits a short while for either (``Choice/wait``) and asks
/// again. After ``silentWaitsBeforeBlocking`` such waits in a row without any input it reads Redis
/// anyway: that read times out after `--network-timeout`, so a server gone silent is noticed as
/// it was before, instead of being waited for forever.
public struct ArrivalOrder: Sendable {
    public enum Choice: Equatable, Sendable { case redis, postgres, wait }

    /// 40 waits of up to 50 ms: 2 s without a byte from either server.
    public static let silentWaitsBeforeBlocking = 40

    /// Waits in a row, since a server was last chosen, that ended without input.
    public private(set) var silentWaits = 0

    public init() {}

    /// The next choice. `redisHasBytes` and `postgresReady` look at the sockets without blocking;
    /// they are called only when the choice depends on them.
    public mutating func next(
        redisWaits: Bool, postgresWaits: Bool, redisHasBytes: () -> Bool, postgresReady: () throws -> Bool
    ) rethrows -> Choice {
        if redisWaits && (!postgresWaits || silentWaits >= Self.silentWaitsBeforeBlocking || redisHasBytes()) {
            silentWaits = 0
            return .redis
        }
        if postgresWaits, try !redisWaits || postgresReady() {
            silentWaits = 0
            return .postgres
        }
        return .wait
    }

    /// A wait for either server ended; `withInput`: whether either socket had something to read.
    public mutating func waited(withInput: Bool) {
        if !withInput { silentWaits += 1 }
    }
}
