import Foundation
import OutboxRelayIO
import Testing

/// A PostgreSQL server of the test's own (initdb in a temporary folder, run as the postgres user
/// when the tests run as root), so it can be stopped and restarted without disturbing other tests.
final class PrivatePostgres {
    let port: Int
    let directory: String
    private let bin: String

    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }
    private var serverOptions: String

    /// `password`: require it (scram-sha-256) instead of trusting local connections.
    /// `serverOptions`: more `-c name=value` settings. `tlsFrom`: a folder of scripts/test-certs.sh,
    /// to serve TLS with its server certificate.
    init(password: String? = nil, serverOptions: String = "", tlsFrom certificates: String? = nil) throws {
        self.serverOptions = serverOptions
        bin = ProcessInfo.processInfo.environment["OUTBOX_TEST_PGBIN"] ?? "/usr/lib/postgresql/15/bin"
        port = freePort()
        directory = "/tmp/outbox-relay-pg-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.shell(["chown", "postgres", directory])
        var initdb = ["\(bin)/initdb", "-D", "\(directory)/data", "-U", "postgres", "--no-sync"]
        if let password {
            try password.write(toFile: "\(directory)/pwfile", atomically: true, encoding: .utf8)
            try Self.shell(["chown", "postgres", "\(directory)/pwfile"])
            initdb += ["-A", "scram-sha-256", "--pwfile", "\(directory)/pwfile"]
        } else {
            initdb += ["-A", "trust"]
        }
        try runAsPostgres(initdb)
        if let certificates {
            for file in ["server.crt", "server.key", "ca.crt"] {
                try Self.shell(["install", "-o", "postgres", "-m", "600", "\(certificates)/\(file)", "\(directory)/\(file)"])
            }
            self.serverOptions += " -c ssl=on -c ssl_cert_file=\(directory)/server.crt -c ssl_key_file=\(directory)/server.key"
        }
        try start()
    }

    func start() throws {
        try runAsPostgres([
            "\(bin)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w", "-t", "60", "-o",
            "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off \(serverOptions)", "start",
        ])
    }

    func stop(mode: String = "fast") throws {
        try runAsPostgres(["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", mode, "-w", "stop"])
    }

    func restart() throws {
        try runAsPostgres(["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "fast", "-w", "-t", "60", "restart"])
    }

    func destroy() {
        try? stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func runAsPostgres(_ command: [String]) throws {
        try Self.shell(getuid() == 0 ? ["runuser", "-u", "postgres", "--"] + command : command)
    }

    /// Runs a command to completion with posix_spawn and waitpid (Foundation's Process can miss
    /// the exit of a child whose own children live on, as pg_ctl's postmaster does).
    static func shell(_ command: [String]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, command[0], &actions, nil, arguments, environ) == 0 else {
            throw TestSetupError.timedOut("cannot run \(command[0])")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            throw TestSetupError.timedOut("\(command.joined(separator: " ")) failed with status \(status)")
        }
    }
}
