-- Appending, as one function: the expected-version check on the stream's row and the
-- insert of every event, in one call. Inside a tenant transaction it is one statement of
-- it; on its own (autocommit) it is a whole write in one round trip, which is what a
-- command that needs nothing else (a create without an Idempotency-Key) pays.
--
-- SECURITY INVOKER (the default): row-level security applies to the caller as to any
-- statement. The function sets the transaction-local tenant itself, so a call outside a
-- tenant transaction is scoped the same way; inside one, it sets the same tenant again.
--
-- p_expected: -1 any version, 0 the stream must not exist, n > 0 exactly n.
-- Returns one row per event appended (conflict = false), or, when the stream was not at
-- the expected version, one row with conflict = true and its actual version (0: none).
-- Concurrent appends at one version serialize on the stream's row: one wins, the others
-- wait for it, then see the new version and conflict.
CREATE FUNCTION append_to_stream(
    p_tenant text,
    p_stream text,
    p_expected bigint,
    p_event_ids uuid[],
    p_event_types text[],
    p_schema_versions integer[],
    p_payloads jsonb[],
    p_metadata jsonb[]
)
RETURNS TABLE (stream_version bigint, global_position bigint, recorded_at timestamptz, conflict boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
    n bigint := cardinality(p_event_ids);
    base bigint;
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    IF p_expected = 0 THEN
        INSERT INTO public.streams (tenant_id, stream_id, version) VALUES (p_tenant, p_stream, n)
        ON CONFLICT (tenant_id, stream_id) DO NOTHING
        RETURNING 0::bigint INTO base;
    ELSIF p_expected > 0 THEN
        UPDATE public.streams AS s SET version = s.version + n
        WHERE s.tenant_id = p_tenant AND s.stream_id = p_stream AND s.version = p_expected
        RETURNING s.version - n INTO base;
    ELSE
        INSERT INTO public.streams AS s (tenant_id, stream_id, version) VALUES (p_tenant, p_stream, n)
        ON CONFLICT (tenant_id, stream_id) DO UPDATE SET version = s.version + EXCLUDED.version
        RETURNING s.version - n INTO base;
    END IF;

    IF base IS NULL THEN
        RETURN QUERY
            SELECT coalesce((SELECT s.version FROM public.streams AS s
                             WHERE s.tenant_id = p_tenant AND s.stream_id = p_stream), 0),
                   NULL::bigint, NULL::timestamptz, true;
        RETURN;
    END IF;

    RETURN QUERY
        INSERT INTO public.events AS ev (tenant_id, stream_id, stream_version, event_id, event_type,
                                         schema_version, payload, metadata)
        SELECT p_tenant, p_stream, base + e.ordinal, e.event_id, e.event_type,
               e.schema_version, e.payload, e.metadata
        FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_payloads, p_metadata)
                 WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, ordinal)
        ORDER BY e.ordinal
        RETURNING ev.stream_version, ev.global_position, ev.recorded_at, false;
END
$$;

REVOKE ALL ON FUNCTION append_to_stream(text, text, bigint, uuid[], text[], integer[], jsonb[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_to_stream(text, text, bigint, uuid[], text[], integer[], jsonb[], jsonb[]) TO chronicle_app;
