import Testing

@testable import OutboxRelay

/// The record's rows: kept as a sorted array, so unions, removals and the text must come out as
/// they did with a dictionary, whatever order the rows come in.
@Suite struct RecordedRowsTests {
    func row(_ id: Int64, _ stamp: Int64) -> OutboxRow {
        OutboxRow(id: id, payload: [], createdAtMicros: stamp)
    }

    func text(_ rows: RecordedRows) -> String {
        String(decoding: rows.text, as: UTF8.self)
    }

    @Test func insertsInAnyOrderAndKeepsTheLastStampOfAnId() {
        var rows: RecordedRows = []
        for (id, stamp) in [(5, 50), (9, 90), (1, 10), (7, 70), (5, 55), (12, 120)] as [(Int64, Int64)] {
            rows.insert(row(id, stamp))
        }
        #expect(text(rows) == "1@10,5@55,7@70,9@90,12@120")
        #expect(rows == RecordedRows([1: 10, 5: 55, 7: 70, 9: 90, 12: 120]))
        #expect(rows.count == 5)
        #expect(rows.contains(row(5, 55)) && !rows.contains(row(5, 50)) && !rows.contains(row(6, 55)))
        #expect(rows.contains(id: 12) && !rows.contains(id: 13) && !rows.contains(id: 0))
    }

    @Test func unitesWithTheOthersStampWinning() {
        let a = RecordedRows([1: 10, 3: 30, 5: 50])
        let b = RecordedRows([2: 20, 3: 33, 6: 60])
        #expect(text(a.union(b)) == "1@10,2@20,3@33,5@50,6@60")
        #expect(text(b.union(a)) == "1@10,2@20,3@30,5@50,6@60")
        #expect(text(a.union(RecordedRows([7: 70, 8: RecordedRows.anyRow]))) == "1@10,3@30,5@50,7@70,8")
        #expect(text(RecordedRows([7: 70]).union(a)) == "1@10,3@30,5@50,7@70")
        #expect(a.union([]) == a && RecordedRows().union(a) == a)
    }

    @Test func removesSortedAndUnsortedIds() {
        var rows = RecordedRows([1: 10, 2: 20, 3: 30, 4: 40, 5: 50])
        rows.remove(ids: [0, 2, 4, 6])
        #expect(text(rows) == "1@10,3@30,5@50")
        rows.remove(ids: [5, 1, 5])
        #expect(text(rows) == "3@30")
        rows.keep { $0 != 3 }
        #expect(rows.isEmpty && rows.text == [])
    }

    @Test func writesEveryDecimalWidth() {
        let values: [Int64] = [0, 9, 10, 99, 100, 1_000_000_007, Int64.max, -1, -10, Int64.min + 1]
        for value in values {
            #expect(text(RecordedRows([1: value])) == "1@\(value)")
            #expect(text(RecordedRows([value: 1])) == "\(value)@1")
        }
        #expect(text(RecordedRows([Int64.min: RecordedRows.anyRow])) == "\(Int64.min)")
    }

    @Test func parsesWithTheLastEntryOfAnIdWinning() {
        #expect(RecordedRows(parsing: "9@1,3,9@2,x,4@y") == RecordedRows([3: RecordedRows.anyRow, 4: RecordedRows.anyRow, 9: 2]))
        #expect(RecordedRows(parsing: "") == [])
        #expect(([4, 2, 4] as RecordedRows) == RecordedRows([2: RecordedRows.anyRow, 4: RecordedRows.anyRow]))
    }
}
