import Foundation
import Logging

/// The open-file limit (`ulimit -n`, systemd's `LimitNOFILE=`): the relay needs a few file
/// descriptors (standard streams, the runtime's event and signal descriptors, a pipe, three
/// sockets, and those of `--metrics-listen`). A soft limit below that is raised to the hard
/// limit where allowed; one that stays too low is named in one line at start-up, since every
/// socket the relay cannot open then fails with "Too many open files" (and is retried).
public enum FileLimit {
    /// Fewer descriptors than this and the relay cannot work.
    static let needed: rlim_t = 32

    /// Raises the soft limit if it is below ``needed``; returns the line to log when the limit
    /// stays too low.
    public static func check() -> String? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return "cannot read the open-file limit: \(String(cString: strerror(errno)))"
        }
        guard limit.rlim_cur < needed else { return nil }
        if limit.rlim_max > limit.rlim_cur {
            var raised = limit
            raised.rlim_cur = min(limit.rlim_max, 1024)
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0, raised.rlim_cur >= needed { return nil }
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return "the open-file limit (ulimit -n, LimitNOFILE=) is \(limit.rlim_cur), too low: the relay needs about \(needed) file descriptors; sockets it cannot open are retried with backoff until the limit is raised"
    }
}
