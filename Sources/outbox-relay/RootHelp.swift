import ArgumentParser

extension OutboxRelayCommand {
    /// Whether the command line asks for the root command's help (`--help`, `-h` or `help`
    /// alone): `run` is the default command, so that help lists run's flags too.
    static func asksForRootHelp(_ arguments: [String]) -> Bool {
        arguments.count == 1 && ["--help", "-h", "help"].contains(arguments[0])
    }

    /// The root help with the flags of `run`, the default command, in place of the root's own
    /// options: argument parser's root help lists only the subcommands.
    static func rootHelp() -> String {
        let root = helpMessage()
        let run = helpMessage(for: RunCommand.self)
        let overview = root.range(of: "USAGE:").map { String(root[..<$0.lowerBound]) } ?? ""
        let subcommands = root.range(of: "SUBCOMMANDS:").map { String(root[$0.lowerBound...]) } ?? ""
        let runOptions = run.range(of: "OPTIONS:\n").map { String(run[$0.upperBound...]) } ?? run
        return overview
            + "USAGE: outbox-relay [run] [<options>]\n       outbox-relay <subcommand> [<options>]\n\n"
            + "OPTIONS (of run, the default command; each can also be set as OUTBOX_RELAY_<FLAG>):\n"
            + runOptions.trimmingSuffixNewlines() + "\n\n"
            + subcommands
    }
}

extension String {
    fileprivate func trimmingSuffixNewlines() -> String {
        var text = self
        while text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}
