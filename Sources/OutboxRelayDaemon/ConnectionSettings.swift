import Foundation

/// The connection settings the relay uses unless the connection string says otherwise.
enum ConnectionSettings {
    /// libpq keywords: identify the instance in `pg_stat_activity` and notice a dead peer in
    /// seconds (TCP keepalive after 5 s idle, then every 2 s, 3 probes; unacknowledged data for
    /// more than the timeout breaks the connection).
    static func postgres(timeout: Double) -> [(String, String)] {
        [
            ("application_name", applicationName),
            ("connect_timeout", String(max(2, Int(timeout.rounded(.up))))),
            ("keepalives", "1"),
            ("keepalives_idle", "5"),
            ("keepalives_interval", "2"),
            ("keepalives_count", "3"),
            ("tcp_user_timeout", String(Int(timeout * 1000))),
        ]
    }

    /// Session settings: no statement may run longer than the timeout, and JIT compilation,
    /// which costs more than it saves on the relay's small queries, is off.
    static func sessionSQL(timeout: Double) -> String {
        "SET statement_timeout = \(Int(timeout * 1000)); SET lock_timeout = \(Int(timeout * 1000)); SET jit = off"
    }

    /// `outbox-relay@<host>:<pid>`, cut to PostgreSQL's 63-byte limit.
    static var applicationName: String {
        let host = ProcessInfo.processInfo.hostName
        return String("outbox-relay@\(host):\(getpid())".prefix(63))
    }
}
