import OutboxRelay
import Testing

/// `OUTBOX_RELAY_*` variables that stand for no flag, and `--split-keys` values that name no key.
@Suite struct ConfigurationMistakeTests {
    let environment = EnvironmentArguments(flags: ["batch-size", "split-keys", "database-url", "table", "schema"])

    @Test func countsSwapsOfNeighboursAsOneEdit() {
        #expect(EnvironmentArguments.editDistance("SZIE", "SIZE") == 1)
        #expect(EnvironmentArguments.editDistance("BATCH_SIZ", "BATCH_SIZE") == 1)
        #expect(EnvironmentArguments.editDistance("", "ABC") == 3)
        #expect(EnvironmentArguments.editDistance("TABLE", "TABLE") == 0)
        #expect(EnvironmentArguments.editDistance("kitten", "sitting") == 3)
    }

    @Test func namesTheClosestFlagOfAMisspelledVariable() {
        let unknown = environment.unknownVariables(in: [
            "OUTBOX_RELAY_BATCH_SZIE": "500", "OUTBOX_RELAY_BATCH_SIZE": "1", "OUTBOX_RELAY_SPLITKEYS": "a", "PATH": "/bin",
        ])
        #expect(unknown.map(\.name) == ["OUTBOX_RELAY_BATCH_SZIE", "OUTBOX_RELAY_SPLITKEYS"])
        #expect(unknown.map(\.closestFlag) == ["batch-size", "split-keys"])
        #expect(unknown.allSatisfy { $0.isMisspelledFlag })
        #expect(unknown[0].suggestion == "OUTBOX_RELAY_BATCH_SIZE (--batch-size)")
    }

    @Test func onlyWarnsAboutVariablesThatAreNoFlagsMisspelling() {
        let unknown = environment.unknownVariables(in: ["OUTBOX_RELAY_BIN": "/x", "OUTBOX_RELAY_DEB": "/y.deb", "OUTBOX_RELAY_TABEL": "t"])
        #expect(unknown.map(\.name) == ["OUTBOX_RELAY_BIN", "OUTBOX_RELAY_DEB", "OUTBOX_RELAY_TABEL"])
        #expect(unknown.map(\.isMisspelledFlag) == [false, false, true])
        #expect(unknown[2].suggestion == "OUTBOX_RELAY_TABLE (--table)")
        #expect(unknown[0].closestFlag != nil, "even a tool's own variable is told the closest flag")
    }

    @Test func knownVariablesAreNotReported() {
        #expect(environment.unknownVariables(in: ["OUTBOX_RELAY_TABLE": "t", "OUTBOX_RELAY_SCHEMA": "res"]).isEmpty)
    }

    @Test func passesAnEmptyValueOnAsAnEmptyValue() {
        #expect(environment.apply(to: [], environment: ["OUTBOX_RELAY_SPLIT_KEYS": ""]) == ["--split-keys", ""])
    }

    @Test func anEmptySplitKeyListMeansEveryKey() {
        #expect(SplitKeyList.parse("") == nil)
        #expect(SplitKeyList.parse(" ") == nil)
        #expect(SplitKeyList.parse(",") == nil)
        #expect(SplitKeyList.parse("a,b,a, b,c") == [.named("a"), .named("b"), .named("c")], "a key named twice is one key")
        #expect(SplitKeyList.parse("a, b,,c") == [.named("a"), .named("b"), .named("c")])
    }
}

@Suite struct EmptyFlagValuesTests {
    @Test func turnsAnEmptyValueAfterTheEqualsSignIntoAnExplicitEmptyArgument() {
        #expect(EmptyFlagValues.separated(["--split-keys=", "--batch-size=5"]) == ["--split-keys", "", "--batch-size=5"])
        #expect(EmptyFlagValues.separated(["--table=a=", "--", "--x="]) == ["--table=a=", "--", "--x="])
        #expect(EmptyFlagValues.separated(["-x=", "--="]) == ["-x=", "--="])
    }
}
