import Testing

@testable import OutboxRelay

@Suite struct SidekiqJobEncoderTests {
    let createdAt: Int64 = 1_700_000_000_123_456
    let now: Int64 = 1_800_000_000_000_000

    func encode(_ payload: String, encoder: SidekiqJobEncoder = SidekiqJobEncoder(), jid: String = "0123456789abcdef01234567") throws -> SidekiqJob {
        try encoder.encode(OutboxRow(id: 7, payload: Array(payload.utf8), createdAtMicros: createdAt), nowMicros: now, makeJID: { jid })
    }

    func text(_ job: SidekiqJob) -> String { String(decoding: job.json, as: UTF8.self) }

    @Test func appendsEnqueuedAtAndKeepsEverythingElseByteForByte() throws {
        let payload = #"{"class" : "HardJob","args":[1,"ü",{"x":null}],"queue":"critical","jid":"aaaaaaaaaaaaaaaaaaaaaaaa","created_at":1.5,"wrapped":"W","tags":["t"]}"#
        let job = try encode(payload)
        #expect(job.queue == "critical")
        #expect(job.placement == .immediate)
        #expect(text(job) == String(payload.dropLast()) + #","enqueued_at":1700000000.123456}"#)
    }

    @Test func replacesAnExistingEnqueuedAtInPlace() throws {
        let job = try encode(#"{"enqueued_at":5,"class":"J","queue":"q","jid":"j","created_at":1.0}"#)
        #expect(text(job) == #"{"enqueued_at":1700000000.123456,"class":"J","queue":"q","jid":"j","created_at":1.0}"#)
    }

    @Test func addsJidAndCreatedAtWhenMissing() throws {
        let job = try encode(#"{"class":"J","queue":"q","args":[]}"#)
        #expect(text(job) == #"{"class":"J","queue":"q","args":[],"jid":"0123456789abcdef01234567","created_at":1700000000.123456,"enqueued_at":1700000000.123456}"#)
    }

    @Test func writesFloatsWithADecimalPointEvenForWholeSeconds() {
        #expect(TimestampStyle.float.format(micros: 1_700_000_000_000_000) == "1700000000.0")
        #expect(TimestampStyle.float.format(micros: 1_700_000_000_000_001) == "1700000000.000001")
        #expect(TimestampStyle.millis.format(micros: 1_700_000_000_123_456) == "1700000000123")
    }

    @Test func writesMillisWhenAsked() throws {
        let job = try encode(#"{"class":"J","queue":"q","jid":"j"}"#, encoder: SidekiqJobEncoder(timestamps: .millis))
        #expect(text(job) == #"{"class":"J","queue":"q","jid":"j","created_at":1700000000123,"enqueued_at":1700000000123}"#)
    }

    @Test func schedulesAFutureAtWithoutAtAndEnqueuedAt() throws {
        let job = try encode(#"{"class":"J","at":1900000000.5,"queue":"q","jid":"j","created_at":1.0,"enqueued_at":2.0}"#)
        #expect(job.placement == .scheduled(score: "1900000000.5"))
        #expect(text(job) == #"{"class":"J","queue":"q","jid":"j","created_at":1.0}"#)
    }

    @Test func pushesAPastAtAtOnceWithoutAt() throws {
        let job = try encode(#"{"class":"J","at":1600000000,"queue":"q","jid":"j","created_at":1.0}"#)
        #expect(job.placement == .immediate)
        #expect(text(job) == #"{"class":"J","queue":"q","jid":"j","created_at":1.0,"enqueued_at":1700000000.123456}"#)
    }

    @Test(arguments: [
        (#"[1]"#, "payload is not a JSON object: expected a JSON object at byte 0"),
        (#"{"class":"J"}"#, #"payload has no "queue" string"#),
        (#"{"class":"J","queue":""}"#, #"payload has no "queue" string"#),
        (#"{"class":"J","queue":5}"#, #"payload has no "queue" string"#),
        (#"{"queue":"q"}"#, #"payload has no "class" string"#),
        (#"{"queue":"q","class":"J","args":{"a":1}}"#, #"payload's "args" is not an array"#),
        (#"{"queue":"q","class":"J","at":"tomorrow"}"#, #"payload's "at" is not a number"#),
    ])
    func rejectsPayloadsSidekiqCannotRun(payload: String, reason: String) {
        #expect(throws: RejectedPayload(reason)) { try encode(payload) }
    }

    @Test func rejectsOversizedPayloads() {
        let encoder = SidekiqJobEncoder(maximumPayloadBytes: 10)
        #expect(throws: RejectedPayload("payload is 35 bytes, more than --max-payload-bytes 10")) {
            try encode(#"{"class":"J","queue":"q","jid":"j"}"#, encoder: encoder)
        }
    }
}

@Suite struct RowJIDTests {
    @Test func aPayloadWithoutJidTakesTheRowsJidColumn() throws {
        let row = OutboxRow(id: 1, payload: Array(#"{"class":"J","queue":"q","created_at":1.0}"#.utf8), createdAtMicros: 1_000_000, jid: "abc\"def")
        let job = try SidekiqJobEncoder().encode(row, nowMicros: 0, makeJID: { "unused" })
        #expect(String(decoding: job.json, as: UTF8.self) == #"{"class":"J","queue":"q","created_at":1.0,"jid":"abc\"def","enqueued_at":1.0}"#)
    }
}
