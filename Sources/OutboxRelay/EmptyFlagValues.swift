/// `--flag=` with nothing after `=`: argument parser reports it as a missing value, while
/// res_outbox reads it as an empty value (`--split-keys=` serves every key).
public enum EmptyFlagValues {
    /// `arguments` with each `--flag=` before a `--` turned into `--flag ""`, an explicit empty value.
    public static func separated(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var options = true
        for argument in arguments {
            if argument == "--" { options = false }
            if options, argument.hasPrefix("--"), argument.hasSuffix("="), argument.count > 3, argument.firstIndex(of: "=") == argument.index(before: argument.endIndex) {
                result += [String(argument.dropLast()), ""]
            } else {
                result.append(argument)
            }
        }
        return result
    }
}
