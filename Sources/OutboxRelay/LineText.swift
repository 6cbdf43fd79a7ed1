/// Writing text that must stay on one line: a text log line, a row of a tab-separated table.
public enum LineText {
    /// `text` with every control character written as an escape (`\n`, `\r`, `\t`, else
    /// `\u00XX`), so that data (a split key, a payload, a server's message) can neither end the
    /// line nor add a column.
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars { appendEscaped(scalar, to: &result) }
        return result
    }

    /// Appends `scalar`, escaped if it is a control character.
    public static func appendEscaped(_ scalar: Unicode.Scalar, to result: inout String) {
        switch scalar {
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case _ where isControl(scalar):
            let hex = String(scalar.value, radix: 16)
            result += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        default: result.unicodeScalars.append(scalar)
        }
    }

    /// C0 and C1 control characters and DEL (Unicode's `Cc`), and the line and paragraph
    /// separators U+2028 and U+2029.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
