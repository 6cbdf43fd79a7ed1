import OutboxRelay
import Testing

/// The fence's record must always cover every row that is in Redis and perhaps not marked.
@Suite struct PushLedgerTests {
    func plan(_ ids: [Int64], alreadyPushed: RecordedRows = []) -> BatchPlan {
        let rows = ids.map { OutboxRow(id: $0, payload: Array(#"{"class":"J","queue":"q","jid":"\#($0)"}"#.utf8), createdAtMicros: 1_000_000) }
        return BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, alreadyPushed: alreadyPushed, makeJID: { "x" })
    }

    @Test func coversTheBatchWhoseMarkIsInFlightWhileTheNextIsPushed() {
        var ledger = PushLedger(alreadyPushed: [])
        let first = plan([1, 2])
        ledger.fetched([1, 2], after: nil, drained: false)
        #expect(ledger.record(pushing: first).ids == [1, 2])
        ledger.pushed(first)
        let second = plan([3, 4])
        ledger.fetched([3, 4], after: 2, drained: false)
        #expect(ledger.record(pushing: second).ids == [1, 2, 3, 4], "the mark of 1 and 2 is still in flight")
        ledger.pushed(second)
        ledger.marked(first.markIDs)
        #expect(ledger.remaining.ids == [3, 4])
        ledger.marked(second.markIDs)
        #expect(ledger.remaining.isEmpty)
    }

    @Test func keepsAnEarlierHoldersRowsUntilTheyAreMarkedOrGone() {
        // The earlier holder pushed 2, 3 and 9; 3 was marked after all, 9 lies beyond this lease's batches.
        var ledger = PushLedger(alreadyPushed: [2, 3, 9])
        let batch = plan([1, 2, 4], alreadyPushed: [2, 3, 9])
        ledger.fetched([1, 2, 4], after: nil, drained: false)
        #expect(ledger.remaining.ids == [2, 9], "3 did not come back, so it is no longer pending")
        #expect(batch.pushedIDs == [1, 4])
        #expect(ledger.record(pushing: batch).ids == [1, 2, 4, 9])
        ledger.pushed(batch)
        ledger.marked(batch.markIDs)
        #expect(ledger.remaining.ids == [9], "the lease ends before reaching 9: the record keeps it")
        ledger.fetched([], after: 4, drained: true)
        #expect(ledger.remaining.isEmpty, "nothing is pending past 4")
    }

    /// A restore or a promotion can give a recorded id to another row: only the very row the
    /// record names (same stamp, its created_at) is marked without a push.
    @Test func aRecordedIdOfAnotherRowIsPushed() {
        let recorded = RecordedRows([2: 1_000_000, 3: 555])
        let batch = plan([2, 3], alreadyPushed: recorded)
        #expect(batch.pushedIDs == [3], "row 3 is not the row the record names")
        #expect(batch.markIDs == [2, 3])
        #expect(batch.pushedRows == RecordedRows([3: 1_000_000]))
        let legacy = plan([2, 3], alreadyPushed: [2, 3])
        #expect(legacy.pushedIDs == [], "entries without a stamp stand for any row with the id")
    }

    @Test func writesAndReadsRecordsWithStamps() {
        let rows = RecordedRows([7: 1_700_000_000_123_456, -3: -5, 10: RecordedRows.anyRow])
        #expect(String(decoding: rows.text, as: UTF8.self) == "-3@-5,7@1700000000123456,10")
        #expect(RecordedRows(parsing: "-3@-5,7@1700000000123456,10") == rows)
        #expect(FencedPush.recordedRows(inRecord: "2:123:4@9,5") == RecordedRows([4: 9, 5: RecordedRows.anyRow]))
    }
}
