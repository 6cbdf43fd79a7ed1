import Foundation

/// The relay's clocks. Every interval (the watchdog, health, sampling and cleanup timers, backoff
/// sleeps, request deadlines) is measured on the monotonic clock, which a step of the wall clock
/// (NTP, `date -s`) does not move; the wall clock is read only where a wall time is meant: whether
/// a job's `at` lies in the future, and the time of a log line. Both are injected where they are
/// used, so timers are tested on a fake clock.
public enum RelayClock {
    /// Microseconds on `CLOCK_MONOTONIC`: only differences mean anything.
    public static func monotonicMicros() -> Int64 {
        read(CLOCK_MONOTONIC)
    }

    /// Microseconds since the Unix epoch on `CLOCK_REALTIME`.
    public static func wallMicros() -> Int64 {
        read(CLOCK_REALTIME)
    }

    private static func read(_ clock: clockid_t) -> Int64 {
        var now = timespec()
        clock_gettime(clock, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }
}
