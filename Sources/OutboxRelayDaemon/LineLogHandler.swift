import Foundation
import Logging
import OutboxRelay
import OutboxRelayIO

/// Writes one line per event to standard error, with every known secret removed. Under systemd
/// the journal stores each line as one entry, so no logged text (a split key, a server's message)
/// may carry a line break or any other control character:
/// - text: `<time> <level> <message> key=value …`; control characters become `\n`, `\r`, `\t` or
///   `\u00XX` in the message, keys and values, and a value with a space, `"`, `=`, `\` or a
///   control character is quoted, with `"` and `\` escaped by a backslash;
/// - json: `{"time":…,"level":…,"message":…,"<key>":…}`, escaped as JSON.
public struct LineLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let format: Format
    private let redactor: SecretRedactor
    private let write: @Sendable (String) -> Void

    public init(
        level: Logger.Level, format: Format = .text, redactor: SecretRedactor,
        write: @escaping @Sendable (String) -> Void = LineLogHandler.standardError
    ) {
        self.logLevel = level
        self.format = format
        self.redactor = redactor
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let sorted = fields.sorted(by: { $0.key < $1.key }).map { ($0.key, redactor.redact("\($0.value)")) }
        let message = redactor.redact("\(event.message)")
        switch format {
        case .text:
            var line = "\(Self.timestamp()) \(event.level) \(LineText.escaped(message))"
            for (key, value) in sorted { line += " \(LineText.escaped(key))=\(Self.quoted(value))" }
            write(line + "\n")
        case .json:
            var line = #"{"time":"\#(Self.timestamp())","level":"\#(event.level)","message":"\#(JSONText.escaped(message))""#
            for (key, value) in sorted { line += #","\#(JSONText.escaped(key))":"\#(JSONText.escaped(value))""# }
            write(line + "}\n")
        }
    }

    /// A value as logfmt writes it: bare when it can be, else quoted.
    private static func quoted(_ value: String) -> String {
        let bare = !value.isEmpty && !value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || LineText.isControl($0)
        }
        guard !bare else { return value }
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            default: LineText.appendEscaped(scalar, to: &result)
            }
        }
        return result + "\""
    }

    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }
}
