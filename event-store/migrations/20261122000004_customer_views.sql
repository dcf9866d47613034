-- The customer read model, built by the projector from the event stream. One row per
-- customer: its latest state. Written only forward: an upsert applies when its version is
-- newer than the row's (the stream-version guard), so a redelivered or late event never
-- regresses a row.
CREATE TABLE customer_views (
    tenant_id       text        NOT NULL,
    customer_id     uuid        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    global_position bigint      NOT NULL,
    name            text        NOT NULL,
    email           text        NOT NULL,
    phone           text,
    address         jsonb,
    tags            text[]      NOT NULL DEFAULT '{}',
    archived        boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);
ALTER TABLE customer_views ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_views FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON customer_views
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON customer_views TO chronicle_app;
