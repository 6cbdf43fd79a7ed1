/// The order in which one pass visits the split keys: each pass starts one key further on, so
/// a key late in the list is not always served last, and instances started together do not all
/// race for the same first key.
public struct KeyRotation: Sendable {
    private var offset: Int

    public init(start: Int = 0) {
        self.offset = start
    }

    public mutating func order(_ keys: [SplitKey]) -> [SplitKey] {
        guard !keys.isEmpty else { return [] }
        let start = offset % keys.count
        offset = (offset + 1) % Int(Int32.max)
        return Array(keys[start...] + keys[..<start])
    }
}
