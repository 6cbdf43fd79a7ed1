/// The 64-bit key of the PostgreSQL advisory lock that leases one split key.
///
/// It is the FNV-1a 64-bit hash of the UTF-8 text `<schema>.<table>` `\n` `<format>` `\n`
/// `<split key>`, read as a signed `bigint`; a NULL split key is written as the single byte 0x00.
/// The table is named as PostgreSQL resolves it (schema-qualified), so instances spelling it
/// differently still compete for the same lock. Any other program can compute the same key to
/// find or take a lease.
public struct LeaseKey: Sendable, Hashable, CustomStringConvertible {
    public let value: Int64

    public init(table: String, format: String, splitKey: SplitKey) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence<UInt8>>(_ bytes: S) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
        }
        mix(table.utf8)
        mix(CollectionOfOne(UInt8(ascii: "\n")))
        mix(format.utf8)
        mix(CollectionOfOne(UInt8(ascii: "\n")))
        switch splitKey {
        case .named(let name): mix(name.utf8)
        case .null: mix(CollectionOfOne(0))
        }
        self.value = Int64(bitPattern: hash)
    }

    public var description: String { String(value) }
}
