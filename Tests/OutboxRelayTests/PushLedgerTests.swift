import OutboxRelay
import Testing

/// The fence's record must always cover every row that is in Redis and perhaps not marked.
@Suite struct PushLedgerTests {
    func plan(_ ids: [Int64], alreadyPushed: Set<Int64> = []) -> BatchPlan {
        let rows = ids.map { OutboxRow(id: $0, payload: Array(#"{"class":"J","queue":"q","jid":"\#($0)"}"#.utf8), createdAtMicros: 1_000_000) }
        return BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, alreadyPushed: alreadyPushed, makeJID: { "x" })
    }

    @Test func coversTheBatchWhoseMarkIsInFlightWhileTheNextIsPushed() {
        var ledger = PushLedger(alreadyPushed: [])
        let first = plan([1, 2])
        ledger.fetched([1, 2], after: nil, drained: false)
        #expect(Set(ledger.record(pushing: first)) == [1, 2])
        ledger.pushed(first)
        let second = plan([3, 4])
        ledger.fetched([3, 4], after: 2, drained: false)
        #expect(ledger.record(pushing: second).sorted() == [1, 2, 3, 4], "the mark of 1 and 2 is still in flight")
        ledger.pushed(second)
        ledger.marked(first.markIDs)
        #expect(ledger.remaining == [3, 4])
        ledger.marked(second.markIDs)
        #expect(ledger.remaining == [])
    }

    @Test func keepsAnEarlierHoldersRowsUntilTheyAreMarkedOrGone() {
        // The earlier holder pushed 2, 3 and 9; 3 was marked after all, 9 lies beyond this lease's batches.
        var ledger = PushLedger(alreadyPushed: [2, 3, 9])
        let batch = plan([1, 2, 4], alreadyPushed: [2, 3, 9])
        ledger.fetched([1, 2, 4], after: nil, drained: false)
        #expect(ledger.remaining == [2, 9], "3 did not come back, so it is no longer pending")
        #expect(batch.pushedIDs == [1, 4])
        #expect(ledger.record(pushing: batch).sorted() == [1, 2, 4, 9])
        ledger.pushed(batch)
        ledger.marked(batch.markIDs)
        #expect(ledger.remaining == [9], "the lease ends before reaching 9: the record keeps it")
        ledger.fetched([], after: 4, drained: true)
        #expect(ledger.remaining == [], "nothing is pending past 4")
    }
}
