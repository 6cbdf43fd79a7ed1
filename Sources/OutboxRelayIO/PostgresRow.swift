internal import CLibPQ

/// One row of a result in binary format, lent to the `decoding` closure of
/// ``PostgresConnection/query(_:decoding:)`` and ``PostgresConnection/receiveNext(decoding:)``
/// while its `PGresult` is alive. It cannot be copied, and the closure only borrows it, so the
/// result's pointer cannot outlive the call.
public struct PostgresRow: ~Copyable {
    let result: OpaquePointer
    let row: Int32

    public func isNull(_ column: Int) -> Bool {
        PQgetisnull(result, row, Int32(column)) == 1
    }

    /// A cell's bytes, copied once; `nil` for SQL NULL.
    public func bytes(_ column: Int) -> [UInt8]? {
        guard !isNull(column) else { return nil }
        let length = Int(PQgetlength(result, row, Int32(column)))
        return PQgetvalue(result, row, Int32(column))!.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    /// An `int8`, `int4`, `int2` or `timestamp` cell as a big-endian integer; `nil` for SQL NULL.
    public func int64(_ column: Int) -> Int64? {
        guard !isNull(column) else { return nil }
        let length = Int(PQgetlength(result, row, Int32(column)))
        return PQgetvalue(result, row, Int32(column))!.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
            var value: Int64 = 0
            for index in 0..<length { value = value << 8 | Int64(bytes[index]) }
            // Narrower integers are sign-extended.
            return length < 8 && length > 0 && bytes[0] & 0x80 != 0 ? value - (1 << (8 * length)) : value
        }
    }

    public func text(_ column: Int) -> String? {
        bytes(column).map { String(decoding: $0, as: UTF8.self) }
    }
}
