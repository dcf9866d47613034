-- Each process its own role, with what it needs and nothing else (the roles themselves are
-- cluster-wide and made by infra/postgres/bootstrap.sql before migrations run).
--
-- chronicle_relay: the one reader of the global log across tenants and the one writer of the
-- relay checkpoint. It reads the log through the view `global_log`, which holds the
-- commit-safe horizon (see the event store's global_log module): an index scan in log order
-- that stops after a page, with no function around it to materialize the page first.
-- chronicle_projector: tenant-scoped reads of the store, the read model's writes, and the
-- global log through read_global_log (replay, catch-up) and event_tenants (verification).
-- chronicle_app (the command API): neither the global log nor the checkpoint; it reads the
-- read model, it does not write it.

CREATE POLICY relay_reads_the_log ON events FOR SELECT TO chronicle_relay USING (true);
GRANT SELECT ON events TO chronicle_relay;

CREATE VIEW global_log WITH (security_invoker = true) AS
    SELECT transaction_id, global_position, tenant_id, stream_id, stream_version, event_id,
           event_type, schema_version, payload, metadata, recorded_at
    FROM events
    -- Below the horizon every transaction has committed or aborted: nothing older than a
    -- checkpoint can appear later.
    WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot());
REVOKE ALL ON global_log FROM PUBLIC;
GRANT SELECT ON global_log TO chronicle_relay;

REVOKE ALL ON relay_checkpoints FROM chronicle_app;
GRANT SELECT, INSERT, UPDATE ON relay_checkpoints TO chronicle_relay;
-- The append trigger, run as whoever appends, reads whether the relay waits; only the relay
-- says so.
REVOKE INSERT, UPDATE ON relay_wakeup FROM chronicle_app;
GRANT SELECT, INSERT, UPDATE ON relay_wakeup TO chronicle_relay;

REVOKE EXECUTE ON FUNCTION read_global_log(xid8, bigint, integer) FROM chronicle_app;
REVOKE EXECUTE ON FUNCTION global_log_backlog(xid8, bigint) FROM chronicle_app;
REVOKE EXECUTE ON FUNCTION event_tenants() FROM chronicle_app;
GRANT EXECUTE ON FUNCTION read_global_log(xid8, bigint, integer) TO chronicle_projector;
GRANT EXECUTE ON FUNCTION event_tenants() TO chronicle_projector;

GRANT SELECT ON events TO chronicle_projector;
GRANT SELECT, INSERT, UPDATE ON customer_views TO chronicle_projector;
REVOKE INSERT, UPDATE ON customer_views FROM chronicle_app;
