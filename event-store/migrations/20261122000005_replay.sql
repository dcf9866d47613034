-- For replay and verification: which tenants have events, and how many. Like
-- read_global_log, a cross-tenant read the app role may make only through this function
-- (it reveals tenant ids and counts, never an event).
CREATE FUNCTION event_tenants()
RETURNS TABLE (tenant_id text, events bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('chronicle.global_log_reader', 'on', true);
    RETURN QUERY
        SELECT e.tenant_id, count(*)
        FROM public.events AS e
        GROUP BY e.tenant_id
        ORDER BY e.tenant_id;
    PERFORM set_config('chronicle.global_log_reader', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION event_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_tenants() TO chronicle_app;
