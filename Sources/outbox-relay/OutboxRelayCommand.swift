import ArgumentParser
import Foundation
import OutboxRelay
import OutboxRelayIO

/// `outbox-relay`: the root command. Without a subcommand it runs the relay.
@main
struct OutboxRelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox-relay",
        abstract: "Moves committed rows from a PostgreSQL outbox table into Sidekiq's Redis queues.",
        version: OutboxRelayVersion.current,
        subcommands: [RunCommand.self, MigrateCommand.self, DeadLettersCommand.self, StatusCommand.self],
        defaultSubcommand: RunCommand.self
    )

    /// Parses the command line and runs it; a usage error prints one line and exits with 64. No
    /// message printed here repeats a password from the command line or the environment, even
    /// one that did not parse.
    static func main() async {
        if asksForRootHelp(Array(CommandLine.arguments.dropFirst())) {
            print(rootHelp())
            return
        }
        let redactor = commandLineRedactor()
        do {
            var command = try parseAsRoot(Self.argumentsWithEnvironment())
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("outbox-relay: \(redactor.redact(failure.description))\n".utf8))
            Foundation.exit(1)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(redactor.redact(fullMessage(for: error)))
            } else {
                let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                FileHandle.standardError.write(Data("outbox-relay: \(redactor.redact(message))\n".utf8))
                if code == .validationFailure {
                    FileHandle.standardError.write(Data("See 'outbox-relay --help'.\n".utf8))
                }
            }
            Foundation.exit(code.rawValue)
        }
    }
}

extension OutboxRelayCommand {
    /// Every password that the arguments and the connection variables may hold, however they are
    /// spelled (``ConnectionSecrets``).
    static func commandLineRedactor(environment: [String: String] = ProcessInfo.processInfo.environment) -> SecretRedactor {
        let names = ["DATABASE_URL", "REDIS_URL", "OUTBOX_RELAY_DATABASE_URL", "OUTBOX_RELAY_REDIS_URL"]
        return (CommandLine.arguments.dropFirst() + names.compactMap { environment[$0] })
            .reduce(SecretRedactor(secrets: [])) { $0.adding(candidatesIn: $1) }
    }

    /// The command line, plus `OUTBOX_RELAY_*` variables for the relay's own flags when it runs
    /// (the other subcommands take their flags from the command line).
    static func argumentsWithEnvironment() -> [String] {
        let arguments = EmptyFlagValues.separated(Array(CommandLine.arguments.dropFirst()))
        let others = ["migrate", "dead-letters", "status", "help"]
        if let first = arguments.first, others.contains(first) { return arguments }
        return EnvironmentArguments(flags: RunCommand.environmentFlags)
            .apply(to: arguments, environment: ProcessInfo.processInfo.environment)
    }
}

enum OutboxRelayVersion {
    static let current = "0.1.0"
}
