/// The `split_key` label of the relay's metrics, from a bounded set, so that one-off keys cannot
/// grow the exposition (and the relay's memory) without end: keys given with `--split-keys` are
/// labelled by name; without them (discovery), the first ``limit`` distinct keys seen are
/// labelled by name and every later one is counted under ``other``. The NULL key is `""`.
public struct SplitKeyLabels: Sendable {
    /// The label shared by every key beyond the bound.
    public static let other = "_other"
    public static let defaultLimit = 100

    private let configured: Set<SplitKey>?
    private var named: Set<SplitKey> = []
    /// Most keys labelled by name in discovery mode.
    public let limit: Int

    public init(configured: [SplitKey]?, limit: Int = SplitKeyLabels.defaultLimit) {
        self.configured = configured.map(Set.init)
        self.limit = limit
    }

    /// The label for `key`; in discovery mode the first `limit` keys asked about keep their name.
    public mutating func label(_ key: SplitKey) -> String {
        if let configured {
            return configured.contains(key) ? key.value ?? "" : Self.other
        }
        if named.contains(key) { return key.value ?? "" }
        guard named.count < limit else { return Self.other }
        named.insert(key)
        return key.value ?? ""
    }
}
