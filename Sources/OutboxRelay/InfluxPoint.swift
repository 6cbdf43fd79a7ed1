/// One InfluxDB point, written as a line of InfluxDB's line protocol:
/// `measurement,tag=value field=1i,other=2i 1700000000000000000` (nanoseconds).
public struct InfluxPoint: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        /// Written with the `i` suffix, as res_outbox's client writes Ruby integers; a field keeps
        /// the type it was first written with, so this must match for old dashboards' series.
        case integer(Int64)
        case float(Double)
    }

    public var measurement: String
    /// Tags in this order; an empty value is left out, as res_outbox's client leaves out nil.
    public var tags: [(String, String)]
    public var fields: [(String, Value)]
    public var nanoseconds: Int64

    public init(measurement: String, tags: [(String, String)], fields: [(String, Value)], nanoseconds: Int64) {
        self.measurement = measurement
        self.tags = tags
        self.fields = fields
        self.nanoseconds = nanoseconds
    }

    public static func == (lhs: InfluxPoint, rhs: InfluxPoint) -> Bool {
        lhs.line == rhs.line
    }

    /// The point in line protocol, without a trailing newline.
    public var line: String {
        var line = Self.escape(measurement, also: [])
        for (key, value) in tags.sorted(by: { $0.0 < $1.0 }) where !value.isEmpty {
            line += "," + Self.escape(key, also: ["="]) + "=" + Self.escape(value, also: ["="])
        }
        line += " "
        line += fields.map { key, value in
            let text: String
            switch value {
            case .integer(let number): text = "\(number)i"
            case .float(let number): text = number.isFinite ? "\(number)" : "0"
            }
            return Self.escape(key, also: ["="]) + "=" + text
        }.joined(separator: ",")
        return line + " \(nanoseconds)"
    }

    /// Commas and spaces (and `also`) get a backslash; a line break cannot be written, so it becomes an escaped space.
    private static func escape(_ text: String, also: Set<Character>) -> String {
        var result = ""
        for character in text {
            switch character {
            case ",", " ": result += "\\\(character)"
            case "\n", "\r": result += "\\ "
            default: result += also.contains(character) ? "\\\(character)" : String(character)
            }
        }
        return result
    }
}

/// The points res_outbox writes, with its series, tags and fields, so dashboards built on
/// res_outbox keep working.
public enum ResOutboxPoints {
    public static let queueSeries = "ruby_event_store.outbox.queue"
    public static let lockSeries = "ruby_event_store.outbox.lock"

    /// Jobs of one split key: `enqueued` pushed, `failed` not pushed (dead-lettered), `remaining`
    /// pending; tagged `format` and `split_key` (left out for the NULL key). A batch's point has no
    /// `remaining` (the relay counts pending rows every 15 s instead of after every batch), so a
    /// panel on `last("remaining")` never sees a made-up 0.
    public static func queue(format: String, splitKey: SplitKey, enqueued: Int = 0, failed: Int = 0, remaining: Int?, nanoseconds: Int64)
        -> InfluxPoint
    {
        var fields: [(String, InfluxPoint.Value)] = [("enqueued", .integer(Int64(enqueued))), ("failed", .integer(Int64(failed)))]
        if let remaining { fields.append(("remaining", .integer(Int64(remaining)))) }
        return InfluxPoint(
            measurement: queueSeries, tags: [("format", format), ("split_key", splitKey.value ?? "")], fields: fields,
            nanoseconds: nanoseconds)
    }

    /// A lock operation that did not succeed: `operation` (`obtain`) and `result` (`taken`), value 1.
    public static func lock(operation: String, result: String, nanoseconds: Int64) -> InfluxPoint {
        InfluxPoint(
            measurement: lockSeries, tags: [("operation", operation), ("result", result)], fields: [("value", .integer(1))],
            nanoseconds: nanoseconds)
    }
}
