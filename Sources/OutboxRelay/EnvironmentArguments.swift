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
    /// the command line does not already give.
    public func apply(to arguments: [String], environment: [String: String]) -> [String] {
        var result = arguments
        for flag in flags {
            guard let value = environment[Self.variable(for: flag)] else { continue }
            let given = arguments.contains { $0 == "--\(flag)" || $0.hasPrefix("--\(flag)=") }
            if !given { result += ["--\(flag)", value] }
        }
        return result
    }
}
