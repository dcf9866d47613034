-- The event store: one append-only log of every event of every tenant.
--
-- Run by chronicle_owner (the schema owner); the services connect as chronicle_app,
-- which may read and append, never rewrite.

CREATE TABLE events (
    tenant_id       text        NOT NULL CHECK (tenant_id ~ '^[a-z][a-z0-9-]{1,62}$'),
    stream_id       text        NOT NULL CHECK (char_length(stream_id) BETWEEN 3 AND 200),
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    -- Unique and increasing in allocation order, but NOT in commit order: a sequence
    -- value is taken at insert, and transactions commit in any order afterwards.
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL CHECK (event_type <> ''),
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction. Every transaction that can still commit has an id at or
    -- above pg_snapshot_xmin(pg_current_snapshot()), so a reader that only reads below
    -- that horizon, ordered by (transaction_id, global_position), never passes an event
    -- that commits later. See read_global_log below.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (tenant_id, stream_id, stream_version)
);

-- The two indexes that do not lead with tenant_id, on purpose: event ids are unique
-- across tenants (they are CloudEvents ids downstream), and the global log is read
-- across tenants by the relay, in commit-safe order.
CREATE UNIQUE INDEX events_event_id ON events (event_id);
CREATE UNIQUE INDEX events_global_log ON events (transaction_id, global_position);
-- A tenant's events in log order: audit reads and per-tenant replays.
CREATE INDEX events_tenant_log ON events (tenant_id, global_position);

-- The current version of every stream. Appends serialize on its row: an expected-version
-- check is an UPDATE ... WHERE version = expected, so of two concurrent appends at the
-- same version exactly one matches and the other sees the new version and matches nothing.
CREATE TABLE streams (
    tenant_id text   NOT NULL,
    stream_id text   NOT NULL,
    version   bigint NOT NULL CHECK (version > 0),
    PRIMARY KEY (tenant_id, stream_id)
);

-- Immutability, for every role including the owner: the app role has no UPDATE, DELETE
-- or TRUNCATE privilege at all, and these triggers refuse them for anyone who has.
CREATE FUNCTION refuse_event_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on events is refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_are_immutable
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_rewrite();

CREATE TRIGGER events_are_never_truncated
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_rewrite();

-- Tenant isolation: forced row-level security keyed by a transaction-local setting
-- (set_config('app.tenant_id', $1, true)). Unset, current_setting(.., true) is NULL or ''
-- and no tenant_id equals either, so an unscoped query sees and writes nothing.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

ALTER TABLE streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE streams FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON streams
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

-- The one cross-tenant read: the global log, for the relay. It runs as the owner and
-- flips a switch that only this policy (for the owner, for SELECT) honours, so neither
-- the app role nor a plain owner session gets a cross-tenant view, and nothing can read
-- past the commit-safe horizon through it. (A function-level SET clause would be neater,
-- but PostgreSQL lets only superusers attach a custom setting to a function.)
CREATE POLICY global_log_reader ON events FOR SELECT TO chronicle_owner
    USING (current_setting('chronicle.global_log_reader', true) = 'on');

CREATE FUNCTION read_global_log(after_transaction_id xid8, after_position bigint, max_events integer)
RETURNS TABLE (
    transaction_id  xid8,
    global_position bigint,
    tenant_id       text,
    stream_id       text,
    stream_version  bigint,
    event_id        uuid,
    event_type      text,
    schema_version  integer,
    payload         jsonb,
    metadata        jsonb,
    recorded_at     timestamptz
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('chronicle.global_log_reader', 'on', true);
    RETURN QUERY
        SELECT e.transaction_id, e.global_position, e.tenant_id, e.stream_id, e.stream_version,
               e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at
        FROM public.events AS e
        WHERE (e.transaction_id, e.global_position) > (after_transaction_id, after_position)
          -- Below the horizon every transaction has committed or aborted: nothing older
          -- than the checkpoint can appear later.
          AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.transaction_id, e.global_position
        LIMIT max_events;
    PERFORM set_config('chronicle.global_log_reader', 'off', true);
END
$$;

REVOKE ALL ON events, streams FROM PUBLIC;
REVOKE ALL ON FUNCTION read_global_log(xid8, bigint, integer) FROM PUBLIC;
GRANT SELECT, INSERT ON events TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON streams TO chronicle_app;
GRANT EXECUTE ON FUNCTION read_global_log(xid8, bigint, integer) TO chronicle_app;
