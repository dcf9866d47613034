-- The relay: where it got to, and a nudge when there is more.

-- One row per relay (normally one, named `relay`). It advances only after Kafka has
-- acknowledged every event up to it, so it is the resume point after any failure.
CREATE TABLE relay_checkpoints (
    relay_name      text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON relay_checkpoints TO chronicle_app;

-- Wakes the relay when events commit (NOTIFY is delivered at commit, and only then),
-- so an idle relay needs no tight poll. One notification per appending statement.
CREATE FUNCTION notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_events_appended', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- How far behind a checkpoint is: events after it and the age of the oldest, across
-- tenants, for the relay's lag metrics. Same switch as read_global_log.
CREATE FUNCTION global_log_backlog(after_transaction_id xid8, after_position bigint)
RETURNS TABLE (events bigint, oldest_recorded_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('chronicle.global_log_reader', 'on', true);
    RETURN QUERY
        SELECT count(*), min(e.recorded_at)
        FROM public.events AS e
        WHERE (e.transaction_id, e.global_position) > (after_transaction_id, after_position);
    PERFORM set_config('chronicle.global_log_reader', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION global_log_backlog(xid8, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION global_log_backlog(xid8, bigint) TO chronicle_app;
