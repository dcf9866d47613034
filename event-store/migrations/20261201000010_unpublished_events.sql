-- How many events the relay has not published yet, and the age of the oldest: the part of
-- a projection's lag that is not in Kafka at all. For the projector's health, which counts
-- lag from the store's head; it may not read the checkpoint or the log itself, so this
-- function (run as the owner, with the global log's switch) tells it a count, no event.
CREATE FUNCTION unpublished_events(p_relay_name text)
RETURNS TABLE (events bigint, oldest_recorded_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
    after_transaction xid8;
    after_position bigint;
BEGIN
    SELECT c.transaction_id, c.global_position INTO after_transaction, after_position
    FROM public.relay_checkpoints AS c WHERE c.relay_name = p_relay_name;
    PERFORM set_config('chronicle.global_log_reader', 'on', true);
    RETURN QUERY
        SELECT count(*), min(e.recorded_at)
        FROM public.events AS e
        WHERE after_transaction IS NULL
           OR (e.transaction_id, e.global_position) > (after_transaction, after_position);
    PERFORM set_config('chronicle.global_log_reader', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION unpublished_events(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unpublished_events(text) TO chronicle_projector;
