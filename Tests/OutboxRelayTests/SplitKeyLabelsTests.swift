import OutboxRelay
import Testing

/// The metrics' split_key label stays within its bound.
@Suite struct SplitKeyLabelsTests {
    @Test func discoveryNamesTheFirstKeysAndSumsTheRest() {
        var labels = SplitKeyLabels(configured: nil, limit: 2)
        let seen = ["a", "b", "c", "a", "d", "b"].map { labels.label(.named($0)) }
        #expect(seen == ["a", "b", "_other", "a", "_other", "b"])
        #expect(labels.label(.null) == "_other")
    }

    @Test func configuredKeysKeepTheirNamesHoweverMany() {
        var labels = SplitKeyLabels(configured: (0..<300).map { .named("k\($0)") }, limit: 2)
        #expect((0..<300).map { labels.label(.named("k\($0)")) } == (0..<300).map { "k\($0)" })
        #expect(labels.label(.named("elsewhere")) == "_other")
    }

    @Test func theNullKeyIsTheEmptyLabel() {
        var labels = SplitKeyLabels(configured: nil)
        #expect(labels.label(.null) == "")
    }
}
