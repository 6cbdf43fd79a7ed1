import Foundation

/// Flags read from the environment: `OUTBOX_RELAY_BATCH_SIZE=500` stands for `--batch-size 500`,
/// so a systemd unit can configure the relay through `EnvironmentFile=` alone. A flag given on
/// the command line wins over its variable.
public struct EnvironmentArguments: Sendable {
    public static let prefix = "OUTBOX_RELAY_"

    /// The flags (without `--`) that may come from the environment.
    public let flags: [String]

    public init(flags: [String]) {
        self.flags = flags
    }

    /// The variable that stands for `flag`: `batch-size` → `OUTBOX_RELAY_BATCH_SIZE`.
    public static func variable(for flag: String) -> String {
        prefix + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `arguments` with `--flag value` appended for each variable set in `environment` whose flag
    /// the command line does not already give. An empty value stays an empty value
    /// (`OUTBOX_RELAY_SPLIT_KEYS=` is `--split-keys ""`).
    public func apply(to arguments: [String], environment: [String: String]) -> [String] {
        var result = arguments
        for flag in flags {
            guard let value = environment[Self.variable(for: flag)] else { continue }
            let given = arguments.contains { $0 == "--\(flag)" || $0.hasPrefix("--\(flag)=") }
            if !given { result += ["--\(flag)", value] }
        }
        return result
    }

    /// The `OUTBOX_RELAY_*` variables of `environment` that stand for no flag, in name order, each
    /// with the flag whose variable is closest to it.
    public func unknownVariables(in environment: [String: String]) -> [UnknownVariable] {
        let known = Set(flags.map(Self.variable(for:)))
        return environment.keys.filter { $0.hasPrefix(Self.prefix) && !known.contains($0) }.sorted().map { name in
            let closest = flags.map { (flag: $0, distance: Self.editDistance(name, Self.variable(for: $0))) }
                .min { $0.distance < $1.distance }
            return UnknownVariable(name: name, closestFlag: closest?.flag, distance: closest?.distance ?? .max)
        }
    }

    /// Edits (insertions, deletions, substitutions and swaps of neighbours) that turn `a` into `b`:
    /// the optimal string alignment distance, so `SZIE` is one edit from `SIZE`.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}

/// An `OUTBOX_RELAY_*` variable that stands for no flag of `run`.
public struct UnknownVariable: Sendable, Equatable {
    public let name: String
    /// The flag (without `--`) whose variable is closest to `name`.
    public let closestFlag: String?
    /// Edits between `name` and the closest flag's variable.
    public let distance: Int

    public init(name: String, closestFlag: String?, distance: Int) {
        self.name = name
        self.closestFlag = closestFlag
        self.distance = distance
    }

    /// Whether `name` is so near a flag's variable that it must be a misspelling of it
    /// (`OUTBOX_RELAY_BATCH_SZIE`): at most 2 edits, and fewer than half the letters after the
    /// prefix. The relay refuses to start with such a variable; it only logs a notice about others (such
    /// as a tool's own `OUTBOX_RELAY_BIN`), naming the closest flag all the same.
    public var isMisspelledFlag: Bool {
        let suffix = name.utf8.count - EnvironmentArguments.prefix.utf8.count
        return closestFlag != nil && distance <= 2 && distance * 2 < suffix
    }

    /// `OUTBOX_RELAY_BATCH_SIZE (--batch-size)`, the closest flag as a variable and as a flag.
    public var suggestion: String {
        closestFlag.map { "\(EnvironmentArguments.variable(for: $0)) (--\($0))" } ?? "none"
    }
}
