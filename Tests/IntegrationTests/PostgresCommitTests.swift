import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// A statement sent down the pipeline runs in an implicit transaction that commits at its group's
/// sync point, after its result has arrived. A result counts only once the commit came back: a
/// mark whose commit failed (a deferred constraint, a serialization failure, a primary that died
/// while its synchronous standby had not confirmed the commit) must not be taken as done, or the
/// relay forgets the rows' record in Redis and pushes them again once they turn up pending.
@Suite struct PostgresCommitTests {
    @Test func aCommitThatFailsAfterTheResultFailsTheStatement() throws {
        let outbox = try TestOutbox()
        defer { outbox.drop() }
        let admin = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        let table = "outbox_relay_commit_\(getpid())"
        try admin.execute("CREATE TABLE \(table) (n int)")
        defer { _ = try? admin.execute("DROP TABLE \(table)") }
        try admin.execute("CREATE FUNCTION \(table)_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$")
        defer { _ = try? admin.execute("DROP FUNCTION \(table)_refuse() CASCADE") }
        try admin.execute(
            "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON \(table) DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \(table)_refuse()")

        let postgres = try PostgresConnection(connectionString: outbox.servers.databaseURL)
        // As the group driver sends them: each statement its own group, the next already in flight.
        try postgres.send([SQLStatement("INSERT INTO \(table) VALUES (1)")], binary: false)
        try postgres.send([SQLStatement("SELECT 2")], binary: false)
        let error = #expect(throws: PostgresError.self, "the INSERT's transaction rolled back at commit") { _ = try postgres.receiveNext() }
        #expect(error?.message.contains("did not commit") == true && error?.message.contains("refused at commit") == true, "\(String(describing: error))")
        #expect(!postgres.isHealthy, "the pipeline is out of step: the owner drops the connection")
        #expect(try admin.query(SQLStatement("SELECT count(*) FROM \(table)")).int64(0, 0) == 0)
    }
}
