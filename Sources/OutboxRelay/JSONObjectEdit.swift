/// Changes to the top-level members of a scanned JSON object, applied to its original bytes:
/// a set member keeps its position (its first occurrence; later duplicates are dropped), a new
/// member goes at the end, and untouched members are copied byte for byte.
struct JSONObjectEdit {
    private let scan: JSONObjectScan
    private var changes: [(key: String, value: String?)] = []

    init(_ scan: JSONObjectScan) {
        self.scan = scan
    }

    /// Sets `key` to the JSON text `value`.
    mutating func set(_ key: String, _ value: String) {
        changes.removeAll { $0.key == key }
        changes.append((key, value))
    }

    mutating func remove(_ key: String) {
        changes.removeAll { $0.key == key }
        changes.append((key, nil))
    }

    func apply() -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(scan.bytes.count + 64)
        output.append(UInt8(ascii: "{"))
        var written = Set<String>()
        func separate() {
            if output.count > 1 { output.append(UInt8(ascii: ",")) }
        }
        for member in scan.members {
            guard let change = changes.first(where: { $0.key == member.key }) else {
                separate()
                output.append(contentsOf: scan.bytes[member.range])
                continue
            }
            guard let value = change.value, !written.contains(member.key) else { continue }
            written.insert(member.key)
            separate()
            output.append(contentsOf: scan.bytes[member.range.lowerBound..<member.valueRange.lowerBound])
            output.append(contentsOf: value.utf8)
        }
        for change in changes where !written.contains(change.key) {
            guard let value = change.value else { continue }
            separate()
            output.append(UInt8(ascii: "\""))
            output.append(contentsOf: change.key.utf8)
            output.append(contentsOf: "\":".utf8)
            output.append(contentsOf: value.utf8)
        }
        output.append(UInt8(ascii: "}"))
        return output
    }
}
