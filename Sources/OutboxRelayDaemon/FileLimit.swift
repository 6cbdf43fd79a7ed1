import Foundation

/// The open-file limit (`ulimit -n`, systemd's `LimitNOFILE=`). The relay needs about 16 file
/// descriptors: the standard streams, the runtime's event, timer and signal descriptors (one per
/// signal it handles), a pipe, and three sockets; `--metrics-listen` adds one per connection.
/// Below 24 (32 with `--metrics-listen`) it could start but never open all its connections (at
/// 16 it never connected), so it refuses to start; a limit that is merely tight is named in one
/// line, and sockets that cannot be opened are retried with backoff. A soft limit below what is
/// wanted is first raised towards the hard one.
public enum FileLimit {
    /// Fewer descriptors than this and the relay refuses to start.
    static func minimum(metrics: Bool) -> rlim_t { metrics ? 32 : 24 }

    public enum Verdict: Equatable {
        case enough
        /// Start, but say so.
        case tight(String)
        /// Do not start: this line says why.
        case tooLow(String)
    }

    /// Raises the soft limit where it is below `wanted` and the hard limit allows, then judges it.
    public static func check(metrics: Bool) -> Verdict {
        let wanted: rlim_t = metrics ? 64 : 32
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return .tight("cannot read the open-file limit: \(String(cString: strerror(errno)))")
        }
        if limit.rlim_cur < wanted && limit.rlim_max > limit.rlim_cur {
            var raised = limit
            raised.rlim_cur = min(limit.rlim_max, max(wanted, 1024))
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let named = "the open-file limit (ulimit -n, LimitNOFILE=) is \(limit.rlim_cur)"
        let minimum = minimum(metrics: metrics)
        if limit.rlim_cur < minimum {
            return .tooLow("\(named), too low to run: the relay needs at least \(minimum) file descriptors, \(wanted) to be comfortable; raise it")
        }
        if limit.rlim_cur < wanted {
            return .tight("\(named), tight: the relay wants \(wanted) file descriptors; sockets it cannot open are retried with backoff")
        }
        return .enough
    }
}
