/// The Redis keys Sidekiq reads, with redis-namespace's `NS:` prefix when one is set.
/// Set members (queue names in `queues`) never carry the prefix.
public struct SidekiqKeys: Sendable, Equatable {
    public let namespace: String?

    public init(namespace: String? = nil) {
        self.namespace = namespace
    }

    public var queues: String { prefixed("queues") }
    public var schedule: String { prefixed("schedule") }

    public func queue(_ name: String) -> String { prefixed("queue:" + name) }

    private func prefixed(_ key: String) -> String {
        namespace.map { "\($0):\(key)" } ?? key
    }
}
