internal import CLibPQ

/// Rows copied out of a `PGresult`.
public struct PostgresRows: Sendable {
    /// Cell values as raw bytes (text or binary format, as requested); `nil` is SQL NULL.
    public let rows: [[[UInt8]?]]
    public let binary: Bool

    init(copying result: OpaquePointer, binary: Bool) {
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        var rows: [[[UInt8]?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var cells: [[UInt8]?] = []
            cells.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                if PQgetisnull(result, row, column) == 1 {
                    cells.append(nil)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let value = PQgetvalue(result, row, column)!
                cells.append(value.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) })
            }
            rows.append(cells)
        }
        self.rows = rows
        self.binary = binary
    }

    public var count: Int { rows.count }

    public func text(_ row: Int, _ column: Int) -> String? {
        rows[row][column].map { String(decoding: $0, as: UTF8.self) }
    }

    public func bytes(_ row: Int, _ column: Int) -> [UInt8]? {
        rows[row][column]
    }

    /// An `int8` (or smaller integer) cell, in either format.
    public func int64(_ row: Int, _ column: Int) -> Int64? {
        guard let cell = rows[row][column] else { return nil }
        if binary {
            return cell.reduce(0) { $0 << 8 | Int64($1) }
        }
        return Int64(String(decoding: cell, as: UTF8.self))
    }

    public func bool(_ row: Int, _ column: Int) -> Bool? {
        guard let cell = rows[row][column], let first = cell.first else { return nil }
        return binary ? first == 1 : first == UInt8(ascii: "t")
    }
}
