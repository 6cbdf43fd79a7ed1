/// An ISO-8601 duration such as `P7D`, `PT12H` or `P1DT30M`, in seconds. Years count 365 days
/// and months 30, as a retention period needs no calendar.
public struct ISODuration: Sendable, Equatable, CustomStringConvertible {
    public let seconds: Double
    public let text: String

    public init(_ text: String) throws(ConfigurationError) {
        func fail() -> ConfigurationError {
            ConfigurationError("'\(text)' is not an ISO-8601 duration such as P7D, PT12H or P1DT30M")
        }
        var rest = Substring(text.uppercased())
        guard rest.hasPrefix("P"), rest.count > 1 else { throw fail() }
        rest = rest.dropFirst()
        var total = 0.0
        var inTime = false
        var number = ""
        var sawUnit = false
        for character in rest {
            if character == "T" {
                guard !inTime, number.isEmpty else { throw fail() }
                inTime = true
                continue
            }
            if character.isNumber || character == "." {
                number.append(character)
                continue
            }
            guard let value = Double(number) else { throw fail() }
            let unit: Double
            switch (inTime, character) {
            case (false, "Y"): unit = 365 * 86400
            case (false, "M"): unit = 30 * 86400
            case (false, "W"): unit = 7 * 86400
            case (false, "D"): unit = 86400
            case (true, "H"): unit = 3600
            case (true, "M"): unit = 60
            case (true, "S"): unit = 1
            default: throw fail()
            }
            total += value * unit
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit, !rest.hasSuffix("T") else { throw fail() }
        self.seconds = total
        self.text = text
    }

    public var description: String { text }
}

/// `--cleanup` and `--cleanup-limit`: delete rows enqueued longer ago than `retention`, at most
/// `limit` rows per round (nil: all), in chunks of ``chunk`` so no statement holds locks long.
public struct CleanupPolicy: Sendable, Equatable {
    public static let chunk = 1000
    /// How often a round runs, at most.
    public static let intervalMicros: Int64 = 60_000_000

    public let retention: ISODuration
    public let limit: Int?

    public init(retention: ISODuration, limit: Int?) {
        self.retention = retention
        self.limit = limit
    }

    /// The size of the next chunk, given how many rows this round deleted so far; nil when done.
    public func nextChunk(deletedSoFar: Int, lastChunkDeleted: Int?) -> Int? {
        if let last = lastChunkDeleted, last < Self.chunk { return nil }
        guard let limit else { return Self.chunk }
        let left = limit - deletedSoFar
        return left > 0 ? min(Self.chunk, left) : nil
    }
}
