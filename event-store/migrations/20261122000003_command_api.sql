-- The command API's own tables: the tenant registry, users, idempotency records and
-- revoked tokens. Events stay the source of truth; these are what the API needs to read
-- without replaying streams on every request.

-- The tenant registry: every tenant's current state, written in the same transaction as
-- its events (stream `tenant-<id>`). A platform table: it is keyed by the tenant's id
-- itself, and every instance of the API holds all of it in memory, reloaded on NOTIFY.
CREATE TABLE tenants (
    id         text        PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{1,62}$'),
    name       text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON tenants TO chronicle_app;

CREATE FUNCTION notify_tenant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_tenants', NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER tenant_changed
    AFTER INSERT OR UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();

-- Platform admins belong to no tenant, so they live outside the tenant tables.
CREATE TABLE platform_admins (
    user_id       uuid        PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    display_name  text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON platform_admins TO chronicle_app;

-- A tenant's users. Password hashes live here and never in an event: events are
-- immutable and copied to Kafka and Elasticsearch.
CREATE TABLE users (
    tenant_id     text        NOT NULL,
    user_id       uuid        NOT NULL,
    username      text        NOT NULL,
    display_name  text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    UNIQUE (tenant_id, username)
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT ON users TO chronicle_app;

-- The first successful response to each Idempotency-Key, per tenant, for 24 hours.
CREATE TABLE idempotency_keys (
    tenant_id           text        NOT NULL,
    idempotency_key     text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_fingerprint text        NOT NULL,
    response_status     smallint    NOT NULL,
    response_headers    jsonb       NOT NULL,
    response_body       bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO chronicle_app;

-- Expired records are purged across tenants by this function only.
CREATE POLICY expiry_purge ON idempotency_keys FOR ALL TO chronicle_owner
    USING (current_setting('chronicle.idempotency_purge', true) = 'on');
CREATE FUNCTION purge_expired_idempotency_keys() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    purged bigint;
BEGIN
    PERFORM set_config('chronicle.idempotency_purge', 'on', true);
    DELETE FROM public.idempotency_keys WHERE created_at < now() - interval '24 hours';
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM public.platform_idempotency_keys WHERE created_at < now() - interval '24 hours';
    PERFORM set_config('chronicle.idempotency_purge', 'off', true);
    RETURN purged;
END
$$;
REVOKE ALL ON FUNCTION purge_expired_idempotency_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_expired_idempotency_keys() TO chronicle_app;

-- Revoked tokens, until they would have expired anyway. Every instance holds the list in
-- memory and reloads it on NOTIFY, so a revocation needs no database call per request.
CREATE TABLE revoked_tokens (
    jti        uuid        PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON revoked_tokens TO chronicle_app;

CREATE FUNCTION notify_token_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_revocations', NEW.jti::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER token_revoked
    AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION notify_token_revoked();

-- Idempotency records of platform admins' writes (tenant registry), which belong to no
-- tenant. Same shape as idempotency_keys, without a tenant.
CREATE TABLE platform_idempotency_keys (
    idempotency_key     text        PRIMARY KEY CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_fingerprint text        NOT NULL,
    response_status     smallint    NOT NULL,
    response_headers    jsonb       NOT NULL,
    response_body       bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON platform_idempotency_keys TO chronicle_app;
