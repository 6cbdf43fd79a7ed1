import Foundation

/// The value of `--split-keys` (or `OUTBOX_RELAY_SPLIT_KEYS`): comma-separated key names.
public enum SplitKeyList {
    /// The named keys, or `nil` for every key with pending rows when the value names none: an
    /// empty `--split-keys=` (or `OUTBOX_RELAY_SPLIT_KEYS=`) serves all keys, as res_outbox reads it.
    public static func parse(_ text: String) -> [SplitKey]? {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // A key named twice is one key: leased twice in one group, it would be pushed twice.
        var seen = Set<String>()
        let unique = names.filter { seen.insert($0).inserted }
        return unique.isEmpty ? nil : unique.map(SplitKey.named)
    }
}
