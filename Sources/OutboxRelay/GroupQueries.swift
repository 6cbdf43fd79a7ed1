/// The statements of a ``LeaseGroup``: each does for every key of the group what the statement of
/// a single lease does for one, in one round trip (res layout, named split keys).
extension OutboxQueries {
    /// Tries the advisory lock of each key; one row per key, in the order given: the id of the
    /// statement's transaction (the fencing token) where the lock was taken, NULL where another
    /// session holds it.
    ///
    /// The transaction gets its id only once every lock has been tried (the aggregate consumes
    /// them all before the id is asked for), so the token is newer than the token of every
    /// earlier holder of each lock won. Asked for at the first lock won, the id could be older
    /// than that of an instance that took a later key's lock, claimed it and let it go while this
    /// statement was still working through its keys (a backend descheduled for a few
    /// milliseconds is enough); the claim of that key was then refused as fenced, and the group
    /// abandoned.
    public func tryLeases(_ keys: [LeaseKey]) -> SQLStatement {
        SQLStatement(
            name: "outbox_group_lease",
            """
            SELECT CASE WHEN w.won THEN t.xid END \
            FROM (SELECT array_agg(pg_try_advisory_lock(l.k) ORDER BY l.n) AS won FROM unnest($1::int8[]) WITH ORDINALITY AS l(k, n)) AS a \
            LEFT JOIN LATERAL (SELECT pg_current_xact_id()::text::int8 AS xid WHERE true = ANY(a.won) OFFSET 0) AS t ON true \
            CROSS JOIN LATERAL unnest(a.won) WITH ORDINALITY AS w(won, n) ORDER BY w.n
            """, [keys.map(\.value).postgresArrayLiteral])
    }

    /// Gives back the advisory locks of `keys`.
    public func releaseLeases(_ keys: [LeaseKey]) -> SQLStatement {
        SQLStatement(
            name: "outbox_group_release", "SELECT count(pg_advisory_unlock(k)) FROM unnest($1::int8[]) AS k",
            [keys.map(\.value).postgresArrayLiteral])
    }

    /// Each key's first batch: up to `limits[i]` pending rows of `keys[i]` in `id` order, as
    /// ``fetch(_:limit:maxBytes:skipping:after:)`` fetches a lease's first batch, all cut where the
    /// payloads of the whole group add up to `maxBytes` (the first row always comes; keys past the
    /// cut get no rows this time), so a group holds no more than one batch's bytes. Columns: the
    /// key's position in `keys` (from 1), then the columns of the single fetch, the running total
    /// counting over the group.
    public func fetchFirstBatches(_ keys: [String], limits: [Int], maxBytes: Int) -> SQLStatement {
        let t = table.quoted
        return SQLStatement(
            name: "outbox_group_fetch",
            """
            SELECT n, id, payload, created_at, jid, running FROM (\
            SELECT g.n, f.id, f.payload, f.created_at, NULL::varchar AS jid, \
            sum(coalesce(octet_length(f.payload), 0)) OVER (ORDER BY g.n, f.id ROWS UNBOUNDED PRECEDING) AS running \
            FROM unnest($2::varchar[], $3::int8[]) WITH ORDINALITY AS g(key, lim, n) CROSS JOIN LATERAL (\
            SELECT id, payload, created_at FROM \(t) \
            WHERE format = $1 AND enqueued_at IS NULL AND split_key = g.key \
            AND id > (SELECT min(id) - 1 FROM \(t) WHERE format = $1 AND enqueued_at IS NULL AND split_key = g.key) \
            ORDER BY id LIMIT g.lim) AS f) AS sized \
            WHERE running - coalesce(octet_length(payload), 0) < $4::int8 ORDER BY n, id
            """, [format, keys.postgresArrayLiteral, limits.map(Int64.init).postgresArrayLiteral, String(maxBytes)])
    }
}
