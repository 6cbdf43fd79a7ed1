import Testing

@testable import OutboxRelay

@Suite struct BatchPlanTests {
    func row(_ id: Int64, _ payload: String) -> OutboxRow {
        OutboxRow(id: id, payload: Array(payload.utf8), createdAtMicros: 1_000_000)
    }

    func job(_ queue: String, _ n: Int) -> String {
        #"{"class":"J","queue":"\#(queue)","jid":"\#(n)"}"#
    }

    func pushed(_ queue: String, _ n: Int) -> [UInt8] {
        Array(#"{"class":"J","queue":"\#(queue)","jid":"\#(n)","created_at":1.0,"enqueued_at":1.0}"#.utf8)
    }

    @Test func groupsJobsPerQueueInRowOrder() {
        let rows = [row(1, job("a", 1)), row(2, job("b", 2)), row(3, job("a", 3)), row(4, "oops"), row(5, job("a", 5))]
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.queued == [
            .init(queue: "a", jobs: [pushed("a", 1), pushed("a", 3), pushed("a", 5)]),
            .init(queue: "b", jobs: [pushed("b", 2)]),
        ])
        #expect(plan.scheduled.isEmpty)
        #expect(plan.pushedIDs == [1, 2, 3, 5])
        #expect(plan.markIDs == [1, 2, 3, 5])
        #expect(plan.rejections == [.init(id: 4, reason: "payload is not a JSON object: expected a JSON object at byte 0")])
    }

    @Test func schedulesFutureJobs() {
        let future = #"{"class":"J","queue":"a","jid":"1","at":3.5}"#
        let plan = BatchPlan(rows: [row(1, future), row(2, job("a", 2))], encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.queued == [.init(queue: "a", jobs: [pushed("a", 2)])])
        #expect(plan.scheduled.map(\.score) == ["3.5"])
        #expect(plan.scheduled.map(\.json) == [Array(#"{"class":"J","queue":"a","jid":"1","created_at":1.0}"#.utf8)])
        #expect(plan.scheduledIDs == [1])
        #expect(plan.markIDs == [1, 2])
    }

    @Test func onlyMarksRowsAnEarlierHolderAlreadyPushed() {
        let rows = [row(1, job("a", 1)), row(2, job("a", 2)), row(3, #"{"class":"J","queue":"a","at":9}"#)]
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, alreadyPushed: [1, 3], makeJID: { "x" })
        #expect(plan.queued == [.init(queue: "a", jobs: [pushed("a", 2)])])
        #expect(plan.scheduled.isEmpty)
        #expect(plan.pushedIDs == [2])
        #expect(plan.markIDs == [1, 2, 3])
        #expect(plan.scheduledIDs == [3], "a scheduled row pushed before is still marked scheduled")
    }

    @Test func pushesNothingWhenEveryRowIsRejected() {
        let plan = BatchPlan(rows: [row(9, "{}")], encoder: SidekiqJobEncoder(), nowMicros: 0, makeJID: { "x" })
        #expect(plan.pushedIDs.isEmpty)
        #expect(plan.markIDs.isEmpty)
        #expect(plan.rejections.map(\.id) == [9])
    }
}

@Suite struct FencedPushTests {
    let lease = LeaseKey(table: "public.t", format: "sidekiq5", splitKey: .named("a"))

    @Test func namesItsKeysAfterTheLeaseWithTheNamespace() {
        #expect(FencedPush.Keys(lease: lease, cluster: "7311", namespace: nil).fence == "outbox-relay:fence:7311:\(lease.value)")
        #expect(FencedPush.Keys(lease: lease, cluster: "7311", namespace: "ns").record == "ns:outbox-relay:pushed:7311:\(lease.value)")
    }

    @Test func passesEveryKeyAndTheJobsInOrder() {
        let future = #"{"class":"J","queue":"a","jid":"9","at":3.5}"#
        let rows = [
            OutboxRow(id: 7, payload: Array(#"{"class":"J","queue":"a","jid":"7"}"#.utf8), createdAtMicros: 1_000_000),
            OutboxRow(id: 8, payload: Array(#"{"class":"J","queue":"b","jid":"8"}"#.utf8), createdAtMicros: 1_000_000),
            OutboxRow(id: 9, payload: Array(future.utf8), createdAtMicros: 1_000_000),
        ]
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        let keys = FencedPush.Keys(lease: lease, cluster: "1", namespace: nil)
        let record = RecordedRows([5: 1_000_000, 7: 1_000_000, 8: 1_000_000, 9: RecordedRows.anyRow])
        // Small: one call of the small push script, jobs and all.
        let small = FencedPush.push(keys: keys, sidekiq: SidekiqKeys(), fence: "0:42", plan: plan, record: .whole(record), smallSHA: "abc")
        #expect(small.map { $0.arguments.map { String(decoding: $0, as: UTF8.self) } } == [[
            "EVALSHA", "abc", "6", keys.fence, keys.record, "queues", "schedule", "queue:a", "queue:b",
            "0:42", String(FencedPush.recordSeconds), "0:42:5@1000000,7@1000000,8@1000000,9", "", "0",
            "2", "a", "1", #"{"class":"J","queue":"a","jid":"7","created_at":1.0,"enqueued_at":1.0}"#,
            "b", "1", #"{"class":"J","queue":"b","jid":"8","created_at":1.0,"enqueued_at":1.0}"#,
            "1", "3.5", #"{"class":"J","queue":"a","jid":"9","created_at":1.0}"#,
        ]])
        // Above the threshold: a transaction whose script sees neither the queued jobs nor the
        // record, which it stages; this one appends its rows after those of the push before it.
        let after = RecordWrite.append(pushed: RecordedRows([7: 1_000_000, 8: 1_000_000, 9: 1_000_000]), after: RecordedRows([4: 1_000_000, 5: 2_000_000]))
        let commands = FencedPush.push(keys: keys, sidekiq: SidekiqKeys(), fence: "0:42", plan: plan, record: after, smallSHA: "abc", transactionAbove: 10)
        let text = commands.map { $0.arguments.map { String(decoding: $0, as: UTF8.self) } }
        #expect(text == [
            ["MULTI"],
            ["LPUSH", "queue:a", #"{"class":"J","queue":"a","jid":"7","created_at":1.0,"enqueued_at":1.0}"#],
            ["LPUSH", "queue:b", #"{"class":"J","queue":"b","jid":"8","created_at":1.0,"enqueued_at":1.0}"#],
            ["SET", keys.staged, ",7@1000000,8@1000000,9@1000000", "EX", String(FencedPush.recordSeconds)],
            [
                "EVAL", FencedPush.pushScript, "7", keys.fence, keys.record, "queues", "schedule", keys.staged, "queue:a", "queue:b",
                "0:42", String(FencedPush.recordSeconds), "5@2000000", "1",
                "2", "a", "1", "b", "1",
                "1", "3.5", #"{"class":"J","queue":"a","jid":"9","created_at":1.0}"#,
            ],
            ["EXEC"],
        ])
    }

    /// The transaction's answer is its script's, inside EXEC's; a transaction Redis discarded
    /// answers with the error that made it discard it.
    @Test func answersATransactionWithItsScriptsAnswerOrTheErrorThatDiscardedIt() throws {
        let ran: [RedisReply] = [.status("OK"), .status("QUEUED"), .status("QUEUED"), .array([.integer(3), .integer(3)])]
        #expect(try FencedPush.pushAnswer(replies: ran[...]) == .pushed)
        let refused: [RedisReply] = [
            .status("OK"), .status("QUEUED"), .status("QUEUED"),
            .array([.error("WRONGTYPE Operation against a key holding the wrong kind of value"), .array([.integer(-1), .bulk(Array("queue:a".utf8)), .status("string"), .bulk(Array("list".utf8))])]),
        ]
        #expect(try FencedPush.pushAnswer(replies: refused[...]) == .refused("Redis key 'queue:a' holds a string, not a list (WRONGTYPE); fix or delete that key"))
        let discarded: [RedisReply] = [
            .status("OK"), .error("OOM command not allowed when used memory > 'maxmemory'."), .status("QUEUED"),
            .error("EXECABORT Transaction discarded because of previous errors."),
        ]
        #expect(throws: FencedPush.Refusal.failed("Redis refused the relay's push script: OOM command not allowed when used memory > 'maxmemory'.")) {
            try FencedPush.pushAnswer(replies: discarded[...])
        }
        // A release's error is named as the release's (after a SCRIPT FLUSH it once read "push").
        #expect(throws: FencedPush.Refusal.failed("Redis refused the relay's release script: NOSCRIPT No matching script.")) {
            try FencedPush.releaseAnswer(.error("NOSCRIPT No matching script."))
        }
        #expect(throws: Never.self) { try FencedPush.releaseAnswer(.integer(1)) }
        let fenced: [RedisReply] = [.status("OK"), .status("QUEUED"), .array([.error("FENCED lease taken over by token 0:9")])]
        #expect(throws: FencedPush.Refusal.fenced("FENCED lease taken over by token 0:9")) { try FencedPush.pushAnswer(replies: fenced[...]) }
    }

    @Test func writesIdListsAsDecimals() {
        #expect(RecordedRows().text == [])
        let ids: RecordedRows = [0, 7, 10, 987_654_321_012, Int64.max, -3]
        #expect(String(decoding: ids.text, as: UTF8.self) == "-3,0,7,10,987654321012,9223372036854775807")
    }

    @Test func readsTheIdsOfARecord() {
        #expect(FencedPush.recordedRows(inRecord: "123:4,5,6") == [4, 5, 6])
        #expect(FencedPush.recordedRows(inRecord: "123:") == [])
        #expect(FencedPush.recordedRows(inRecord: "") == [])
        #expect(FencedPush.recordedRows(inRecord: "2:123:4,5") == [4, 5], "a fence with an epoch")
    }

    @Test func readsTheTransactionIdOfAFence() {
        #expect(FencedPush.xid(inFence: "3:1234") == 1234)
        #expect(FencedPush.xid(inFence: "1234") == 1234, "a fence written before epochs")
    }

    @Test func groupsQueuesByTheirBytes() {
        let nfc = "caf\u{E9}"
        let nfd = "cafe\u{301}"
        #expect(nfc == nfd, "Swift calls them equal")
        let rows = [nfc, nfd, nfc].enumerated().map { index, queue in
            OutboxRow(id: Int64(index + 1), payload: Array(#"{"class":"J","queue":"\#(queue)","jid":"\#(index)"}"#.utf8), createdAtMicros: 1_000_000)
        }
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.queued.map { Array($0.queue.utf8) } == [Array(nfc.utf8), Array(nfd.utf8)])
        #expect(plan.queued.map(\.jobs.count) == [2, 1])
        #expect(Set([SplitKey.named(nfc), .named(nfd)]).count == 2, "split keys are bytes too")
    }

    @Test func rejectsRowsWhoseCreatedAtDoesNotFit() {
        let payload = Array(#"{"class":"J","queue":"a"}"#.utf8)
        let rows = [
            OutboxRow(id: 1, payload: payload, postgresMicros: .max, jid: nil),
            OutboxRow(id: 2, payload: payload, postgresMicros: .min, jid: nil),
            OutboxRow(id: 3, payload: payload, postgresMicros: .max - 5, jid: nil),
            OutboxRow(id: 4, payload: payload, postgresMicros: nil, jid: nil),
            OutboxRow(id: 5, payload: nil, postgresMicros: 0, jid: nil),
            OutboxRow(id: 6, payload: payload, postgresMicros: 0, jid: nil),
        ]
        let plan = BatchPlan(rows: rows, encoder: SidekiqJobEncoder(), nowMicros: 2_000_000, makeJID: { "x" })
        #expect(plan.rejections.map(\.reason) == [
            "created_at is infinity", "created_at is -infinity", "created_at is out of range", "created_at is NULL", "payload is NULL",
        ])
        #expect(plan.pushedIDs == [6])
    }
}
