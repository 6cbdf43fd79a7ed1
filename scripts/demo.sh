#!/usr/bin/env bash
# The relay end to end, against the throwaway servers of scripts/with-servers.sh: create the
# outbox table, commit a few hundred jobs, run the relay until Redis has them all, show them,
# then stop the relay with SIGTERM as systemd would.
set -euo pipefail
relay=$1
db=$OUTBOX_TEST_DATABASE_URL
redis=(redis-cli -p "$OUTBOX_TEST_REDIS_PORT")

echo "== outbox table (ruby_event_store-outbox layout) at $db"
psql -q -v ON_ERROR_STOP=1 "$db" <<'SQL'
CREATE TABLE event_store_outbox (id bigserial PRIMARY KEY, split_key varchar NULL, format varchar NOT NULL,
  payload bytea NOT NULL, created_at timestamp(6) NOT NULL, enqueued_at timestamp(6) NULL);
CREATE INDEX ON event_store_outbox (format, enqueued_at, split_key);
CREATE INDEX ON event_store_outbox (created_at, enqueued_at);
CREATE INDEX event_store_outbox_pending ON event_store_outbox (format, split_key, id) WHERE enqueued_at IS NULL;
SQL

echo "== the app commits 300 jobs into three queues, in its own transactions"
psql -q -v ON_ERROR_STOP=1 "$db" <<'SQL'
INSERT INTO event_store_outbox (split_key, format, payload, created_at)
SELECT q, 'sidekiq5',
       convert_to(json_build_object('class', 'InvoiceMailer', 'queue', q, 'args', json_build_array(n, 'invoice-' || n),
                                    'jid', lpad(to_hex(n), 24, '0'), 'retry', true)::text, 'UTF8'),
       now() at time zone 'utc'
FROM generate_series(1, 300) AS n, LATERAL (SELECT (ARRAY['default', 'mailers', 'critical'])[1 + n % 3] AS q) AS k
ORDER BY n;
SQL
psql -q "$db" -c "SELECT split_key, count(*) AS pending FROM event_store_outbox WHERE enqueued_at IS NULL GROUP BY 1 ORDER BY 1"

echo "== outbox-relay --database-url $db --redis-url $OUTBOX_TEST_REDIS_URL --batch-size 50"
"$relay" --database-url "$db" --redis-url "$OUTBOX_TEST_REDIS_URL" --batch-size 50 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    pending=$(psql -tA "$db" -c "SELECT count(*) FROM event_store_outbox WHERE enqueued_at IS NULL")
    [ "$pending" = 0 ] && break
    sleep 0.1
done
[ "$pending" = 0 ] || { echo "relay did not drain the outbox" >&2; exit 1; }

echo "== Redis, as Sidekiq will see it"
echo "queues: $("${redis[@]}" smembers queues | sort | tr '\n' ' ')"
for queue in default mailers critical; do
    echo "queue:$queue holds $("${redis[@]}" llen "queue:$queue") jobs; next to run: $("${redis[@]}" lindex "queue:$queue" -1)"
done
psql -q "$db" -c "SELECT count(*) FILTER (WHERE enqueued_at IS NULL) AS pending, count(*) FILTER (WHERE enqueued_at IS NOT NULL) AS enqueued FROM event_store_outbox"

echo "== SIGTERM"
kill -TERM $pid
status=0
wait $pid || status=$?
trap - EXIT
echo "relay exited with status $status"
[ "$status" = 0 ]
