import Foundation
import OutboxRelayIO

/// A streaming standby of a ``PrivatePostgres``, made with `pg_basebackup -R`, in a folder under
/// /tmp that ``destroy()`` removes.
final class PostgresStandby {
    let port: Int
    let directory: String
    private let bin = ProcessInfo.processInfo.environment["OUTBOX_TEST_PGBIN"] ?? "/usr/lib/postgresql/15/bin"

    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }

    init(of primary: PrivatePostgres) throws {
        port = freePort()
        directory = "/tmp/outbox-relay-pg-standby-\(getpid())-\(port)"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try PrivatePostgres.shell(["chown", "postgres", directory])
            try asPostgres(["\(bin)/pg_basebackup", "-D", "\(directory)/data", "-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-R", "-X", "stream", "--no-sync"])
            try start()
        } catch {
            destroy()
            throw error
        }
    }

    func start() throws {
        try asPostgres([
            "\(bin)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w", "-t", "60", "-o",
            "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        ])
    }

    func stop() throws {
        try asPostgres(["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "fast", "-w", "stop"])
    }

    /// `pg_ctl promote`: the standby becomes a primary.
    func promote() throws {
        try asPostgres(["\(bin)/pg_ctl", "-D", "\(directory)/data", "-w", "-t", "60", "promote"])
    }

    func destroy() {
        try? asPostgres(["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "immediate", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func asPostgres(_ command: [String]) throws {
        try PrivatePostgres.shell(getuid() == 0 ? ["runuser", "-u", "postgres", "--"] + command : command)
    }
}
