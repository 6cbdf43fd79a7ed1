/// The statements of a ``LeaseGroup``: each does for every key of the group what the statement of
/// a single lease does for one, in one round trip (res layout, named split keys).
extension OutboxQueries {
    /// Tries the advisory lock of each key; one row per key, in the order given: the id of the
    /// statement's transaction (the fencing token) where the lock was taken, NULL where another
    /// session holds it.
    public func tryLeases(_ keys: [LeaseKey]) -> SQLStatement {
        SQLStatement(
            name: "outbox_group_lease",
            """
            SELECT CASE WHEN pg_try_advisory_lock(l.k) THEN pg_current_xact_id()::text::int8 END \
            FROM unnest($1::int8[]) WITH ORDINALITY AS l(k, n) ORDER BY l.n
            """, [keys.map(\.value).postgresArrayLiteral])
    }

    /// Gives back the advisory locks of `keys`.
    public func releaseLeases(_ keys: [LeaseKey]) -> SQLStatement {
        SQLStatement(
            name: "outbox_group_release", "SELECT count(pg_advisory_unlock(k)) FROM unnest($1::int8[]) AS k",
            [keys.map(\.value).postgresArrayLiteral])
    }

    /// Each key's first batch, as ``fetch(_:limit:maxBytes:skipping:after:)`` fetches it for one
    /// key (`limits[i]` rows of `keys[i]` after its smallest pending id, cut at `maxBytes` per key).
    /// Columns: the key's position in `keys` (from 1), then the columns of the single fetch.
    public func fetchFirstBatches(_ keys: [String], limits: [Int], maxBytes: Int) -> SQLStatement {
        let t = table.quoted
        return SQLStatement(
            name: "outbox_group_fetch",
            """
            SELECT g.n, f.id, f.payload, f.created_at, f.jid, f.running \
            FROM unnest($2::varchar[], $3::int8[]) WITH ORDINALITY AS g(key, lim, n) CROSS JOIN LATERAL (\
            SELECT id, payload, created_at, jid, running FROM (\
            SELECT *, sum(coalesce(octet_length(payload), 0)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS running FROM (\
            SELECT id, payload, created_at, NULL::varchar AS jid FROM \(t) \
            WHERE format = $1 AND enqueued_at IS NULL AND split_key = g.key \
            AND id > (SELECT min(id) - 1 FROM \(t) WHERE format = $1 AND enqueued_at IS NULL AND split_key = g.key) \
            ORDER BY id LIMIT g.lim) AS page) AS sized \
            WHERE running - coalesce(octet_length(payload), 0) < $4::int8) AS f ORDER BY g.n, f.id
            """, [format, keys.postgresArrayLiteral, limits.map(Int64.init).postgresArrayLiteral, String(maxBytes)])
    }
}
