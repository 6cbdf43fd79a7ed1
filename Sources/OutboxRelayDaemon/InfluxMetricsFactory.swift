import CoreMetrics
import Foundation
import OutboxRelay

/// swift-metrics' backend for `--metrics-url`: turns the relay's own metrics into the points
/// res_outbox writes (``ResOutboxPoints``), handed to an ``InfluxReporter``. Jobs relayed and
/// dead-lettered per batch become `ruby_event_store.outbox.queue` points (`enqueued`, `failed`),
/// the pending rows sampled every 15 s become its `remaining`, and a lease held by another
/// instance becomes `ruby_event_store.outbox.lock` with `operation=obtain,result=taken`. Every
/// other metric is ignored here.
public struct InfluxMetricsFactory: MetricsFactory {
    let reporter: InfluxReporter
    let format: String
    let nowNanos: @Sendable () -> Int64

    public init(reporter: InfluxReporter, format: String, nowNanos: @escaping @Sendable () -> Int64 = InfluxMetricsFactory.systemNanos) {
        self.reporter = reporter
        self.format = format
        self.nowNanos = nowNanos
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        let key = SplitKey(dimension("split_key", in: dimensions).flatMap { $0.isEmpty ? nil : $0 })
        let (reporter, format, now) = (self.reporter, self.format, self.nowNanos)
        switch label {
        case RelayMetrics.relayed:
            return PointCounter { count in
                reporter.record(ResOutboxPoints.queue(format: format, splitKey: key, enqueued: count, remaining: nil, nanoseconds: now()))
            }
        case RelayMetrics.deadLettered:
            return PointCounter { count in
                reporter.record(ResOutboxPoints.queue(format: format, splitKey: key, failed: count, remaining: nil, nanoseconds: now()))
            }
        case RelayMetrics.leases where dimension("result", in: dimensions) == "held_elsewhere":
            return PointCounter { _ in reporter.record(ResOutboxPoints.lock(operation: "obtain", result: "taken", nanoseconds: now())) }
        default:
            return NOOPMetricsHandler.instance
        }
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard label == RelayMetrics.pending else { return NOOPMetricsHandler.instance }
        let key = SplitKey(dimension("split_key", in: dimensions).flatMap { $0.isEmpty ? nil : $0 })
        let (reporter, format, now) = (self.reporter, self.format, self.nowNanos)
        return PendingRecorder { pending in
            reporter.record(ResOutboxPoints.queue(format: format, splitKey: key, remaining: pending, nanoseconds: now()))
        }
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        NOOPMetricsHandler.instance
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { NOOPMetricsHandler.instance }
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NOOPMetricsHandler.instance }
    public func destroyCounter(_ handler: any CounterHandler) {}
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    public func destroyRecorder(_ handler: any RecorderHandler) {}
    public func destroyMeter(_ handler: any MeterHandler) {}
    public func destroyTimer(_ handler: any TimerHandler) {}

    private func dimension(_ name: String, in dimensions: [(String, String)]) -> String? {
        dimensions.first { $0.0 == name }?.1
    }

    public static func systemNanos() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}

/// A counter whose every increment is one point (a zero increment, as the relay uses to
/// pre-register a series, is none).
private final class PointCounter: CounterHandler, @unchecked Sendable {
    private let write: (Int) -> Void

    init(_ write: @escaping (Int) -> Void) {
        self.write = write
    }

    func increment(by amount: Int64) {
        if amount > 0 { write(Int(amount)) }
    }

    func reset() {}
}

/// The pending rows of one key, each sample one `remaining` point.
private final class PendingRecorder: RecorderHandler, @unchecked Sendable {
    private let write: (Int) -> Void

    init(_ write: @escaping (Int) -> Void) {
        self.write = write
    }

    func record(_ value: Int64) { write(Int(value)) }
    func record(_ value: Double) { write(Int(value)) }
}
