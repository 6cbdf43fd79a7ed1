/// The SQL function `migrate` installs beside the outbox table, so any app, script or trigger can
/// enqueue a Sidekiq job in its own transaction without writing a payload by hand:
///
///     outbox_relay_enqueue(queue text, job_class text, args jsonb DEFAULT '[]',
///                          at timestamptz DEFAULT NULL, options jsonb DEFAULT '{}') RETURNS text
///
/// It writes one pending row of the layout whose payload is what Sidekiq's client would push:
/// `class`, `args`, `queue`, a 24-hex `jid` (or `options.jid`), `created_at` as float epoch
/// seconds, `retry: true` unless `options` says otherwise, `options` merged in (`tags`,
/// `backtrace`, …), and `at` (epoch seconds) for a job to run later; it returns the jid. A bad
/// argument raises an error, so no row the relay would dead-letter is ever written. The function
/// lives in the table's schema and keeps the `search_path` of `migrate`, so it finds its table
/// whatever the caller's path.
extension OutboxQueries {
    public static let enqueueFunctionName = "outbox_relay_enqueue"

    /// The function, qualified like the table.
    public var enqueueFunction: TableName { table.sibling(named: Self.enqueueFunctionName) }

    public var enqueueFunctionStatement: String {
        let insert: String
        switch layout {
        case .res:
            // res_outbox's producer puts the queue in split_key, so each queue is its own lease.
            insert = """
                INSERT INTO \(table.quoted) (split_key, format, payload, created_at) \
                VALUES (queue, '\(format)', convert_to(job::text, 'UTF8'), now() AT TIME ZONE 'utc');
                """
        case .reliableJob:
            insert = """
                INSERT INTO \(table.quoted) (jid, job_class, payload, status, created_at, updated_at) \
                VALUES (new_jid, job_class, job::json, 'pending', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc');
                """
        }
        return """
            CREATE OR REPLACE FUNCTION \(enqueueFunction.quoted)(queue text, job_class text, args jsonb DEFAULT '[]', \
            "at" timestamptz DEFAULT NULL, options jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql \
            SET search_path FROM CURRENT AS $outbox$
            DECLARE
              new_jid text;
              job jsonb;
            BEGIN
              IF coalesce(queue, '') = '' THEN
                RAISE EXCEPTION 'outbox_relay_enqueue: queue must be a non-empty string';
              END IF;
              IF coalesce(job_class, '') = '' THEN
                RAISE EXCEPTION 'outbox_relay_enqueue: job_class must be a non-empty string';
              END IF;
              IF jsonb_typeof(args) IS DISTINCT FROM 'array' THEN
                RAISE EXCEPTION 'outbox_relay_enqueue: args must be a JSON array, got %', coalesce(jsonb_typeof(args), 'NULL');
              END IF;
              IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
                RAISE EXCEPTION 'outbox_relay_enqueue: options must be a JSON object, got %', coalesce(jsonb_typeof(options), 'NULL');
              END IF;
              IF options ? 'jid' AND coalesce(options->>'jid', '') = '' THEN
                RAISE EXCEPTION 'outbox_relay_enqueue: options.jid must be a non-empty string';
              END IF;
              new_jid := coalesce(options->>'jid', left(replace(gen_random_uuid()::text, '-', ''), 24));
              job := jsonb_build_object('retry', true) || (options - 'at' - 'enqueued_at') || jsonb_build_object(
                'class', job_class, 'args', args, 'queue', queue, 'jid', new_jid, 'created_at', extract(epoch FROM now()));
              IF "at" IS NOT NULL THEN
                job := job || jsonb_build_object('at', extract(epoch FROM "at"));
              END IF;
              \(insert)
              RETURN new_jid;
            END $outbox$
            """
    }
}
