import Foundation
import Logging
import Metrics
import OutboxRelay
import OutboxRelayIO

/// Sends points to InfluxDB (`--metrics-url`) from its own thread, so the relay never waits for
/// InfluxDB: ``record(_:)`` only appends to a bounded ``InfluxBuffer`` (dropping the oldest point,
/// counted, when it is full), and the thread writes what is buffered every ``flushInterval``
/// seconds, or sooner when a full write's worth is waiting. While InfluxDB is away the thread
/// retries with backoff (1 s doubling up to 30 s), logging the problem once and its end once.
public final class InfluxReporter: @unchecked Sendable {
    public let url: InfluxURL
    private let client: InfluxClient
    private let logger: Logger
    private let flushInterval: Double
    private let linesPerWrite: Int
    private let condition = NSCondition()
    private var buffer: InfluxBuffer
    private let capacity: Int
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    private var started = false

    public static let droppedMetric = "outbox_relay_influx_points_dropped_total"

    public init(url: InfluxURL, logger: Logger, capacity: Int = 10_000, flushInterval: Double = 1, linesPerWrite: Int = 5_000, timeout: Double = 5) {
        self.url = url
        self.client = InfluxClient(url: url, timeout: timeout)
        self.logger = logger
        self.flushInterval = flushInterval
        self.linesPerWrite = linesPerWrite
        self.buffer = InfluxBuffer(capacity: capacity)
        self.capacity = capacity
    }

    /// Buffers a point; never blocks on InfluxDB.
    public func record(_ point: InfluxPoint) {
        let line = point.line
        condition.lock()
        buffer.append(line)
        let full = buffer.count >= linesPerWrite
        condition.unlock()
        if full { condition.signal() }
    }

    /// Points dropped so far because the buffer was full.
    public var dropped: Int {
        condition.lock()
        defer { condition.unlock() }
        return buffer.dropped
    }

    public func start() {
        started = true
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "outbox-relay-influx"
        thread.start()
    }

    /// Asks the thread to write what is buffered once more and end; waits at most `seconds`.
    public func stop(within seconds: Double = 2) {
        guard started else { return }
        condition.lock()
        stopping = true
        condition.unlock()
        condition.broadcast()
        _ = finished.wait(timeout: .now() + seconds)
    }

    private func run() {
        var failing: String?
        var delay = 1.0
        var reportedDropped = 0
        while true {
            condition.lock()
            let due = Date(timeIntervalSinceNow: flushInterval)
            while !stopping && buffer.count < linesPerWrite && condition.wait(until: due) {}
            let lastRound = stopping
            let lines = buffer.take(linesPerWrite)
            let dropped = buffer.dropped
            condition.unlock()

            if dropped > reportedDropped {
                Counter(label: Self.droppedMetric).increment(by: dropped - reportedDropped)
                logger.warning(
                    "the InfluxDB buffer is full: dropped the oldest points",
                    metadata: ["outbox.metrics_url": "\(url)", "outbox.points_dropped": "\(dropped)"])
                reportedDropped = dropped
            }
            do {
                try client.write(lines)
                if failing != nil {
                    logger.info("writing metrics to InfluxDB again", metadata: ["outbox.metrics_url": "\(url)"])
                    failing = nil
                }
                delay = 1
            } catch {
                if !error.retryable {
                    // InfluxDB refused these points themselves: sending them again would not help.
                    logger.error("\(error.message); \(lines.count) points dropped", metadata: ["outbox.metrics_url": "\(url)"])
                    continue
                }
                condition.lock()
                buffer.putBack(lines)
                condition.unlock()
                if failing != error.message {
                    logger.error(
                        "\(error.message); buffering up to \(capacity) points meanwhile", metadata: ["outbox.metrics_url": "\(url)"])
                    failing = error.message
                }
                if lastRound { return }
                condition.lock()
                let retryAt = Date(timeIntervalSinceNow: delay)
                while !stopping && condition.wait(until: retryAt) {}
                condition.unlock()
                delay = min(delay * 2, 30)
                continue
            }
            if lastRound {
                condition.lock()
                let empty = buffer.isEmpty
                condition.unlock()
                if empty { return }
            }
        }
    }
}
