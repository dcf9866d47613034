-- Tenants and people: sign-up's pending tenants, user administration, refresh tokens and
-- tenant-defined roles. Events stay the source of truth (streams `tenant-<id>` and
-- `user-<id>`); these tables are what the API reads per request, or holds in memory.

-- A tenant being set up (sign-up, or a platform admin's registration) is `pending` until
-- every step is done; nobody can log in to it. `setup_fingerprint` is the request that
-- started it: a retry of that request resumes it, anything else is a conflict.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('pending', 'active', 'suspended'));
ALTER TABLE tenants ADD COLUMN setup_fingerprint text;
-- Abandoned sign-ups are taken back (their rows deleted; the stream records it).
GRANT DELETE ON tenants TO chronicle_app;

-- Users: a role may be a tenant's own; deactivated users cannot log in; tokens issued
-- before `sessions_valid_after` are refused (a password change, a deactivation).
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role ~ '^[a-z][a-z0-9_-]{1,39}$');
ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;
ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz;
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
GRANT UPDATE (display_name, role, password_hash, active, sessions_valid_after, updated_at)
    ON users TO chronicle_app;
GRANT DELETE ON users TO chronicle_app;
CREATE INDEX users_by_role ON users (tenant_id, role);

-- Every instance holds who may do what (role, active, sessions) of every user in memory,
-- and reloads a user when notified: a deactivation or a role change applies everywhere
-- within a second, with no database call per request.
CREATE FUNCTION notify_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('chronicle_users', OLD.tenant_id || '/' || OLD.user_id::text);
        RETURN NULL;
    END IF;
    PERFORM pg_notify('chronicle_users', NEW.tenant_id || '/' || NEW.user_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER user_changed
    AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();

-- What the in-memory directory needs of every user across tenants, and nothing else (no
-- names, no hashes): read by this function alone, through a policy that only it opens.
CREATE POLICY directory_read ON users FOR SELECT TO chronicle_owner
    USING (current_setting('chronicle.directory_read', true) = 'on');
CREATE FUNCTION user_directory(p_tenant text DEFAULT NULL, p_user uuid DEFAULT NULL)
RETURNS TABLE (tenant_id text, user_id uuid, role text, active boolean,
               sessions_valid_after timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM set_config('chronicle.directory_read', 'on', true);
    RETURN QUERY
        SELECT u.tenant_id, u.user_id, u.role, u.active, u.sessions_valid_after
        FROM public.users u
        WHERE (p_tenant IS NULL OR u.tenant_id = p_tenant)
          AND (p_user IS NULL OR u.user_id = p_user);
    PERFORM set_config('chronicle.directory_read', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION user_directory(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION user_directory(text, uuid) TO chronicle_app;

-- A tenant's own roles: a name and a set of permissions (the built-in roles are fixed in
-- code). Every instance holds them in memory, reloaded per tenant on NOTIFY.
CREATE TABLE roles (
    tenant_id   text        NOT NULL,
    name        text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{1,39}$'
                                            AND name NOT IN ('admin', 'member', 'viewer', 'platform_admin')),
    permissions text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON roles TO chronicle_app;

CREATE FUNCTION notify_roles_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_roles', COALESCE(NEW.tenant_id, OLD.tenant_id));
    RETURN NULL;
END
$$;
CREATE TRIGGER roles_changed
    AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH ROW EXECUTE FUNCTION notify_roles_changed();

CREATE POLICY directory_read ON roles FOR SELECT TO chronicle_owner
    USING (current_setting('chronicle.directory_read', true) = 'on');
CREATE FUNCTION role_directory(p_tenant text DEFAULT NULL)
RETURNS TABLE (tenant_id text, name text, permissions text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM set_config('chronicle.directory_read', 'on', true);
    RETURN QUERY
        SELECT r.tenant_id, r.name, r.permissions
        FROM public.roles r
        WHERE p_tenant IS NULL OR r.tenant_id = p_tenant;
    PERFORM set_config('chronicle.directory_read', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION role_directory(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION role_directory(text) TO chronicle_app;

-- Refresh tokens: opaque to clients, stored only as a SHA-256 of the token (which is 256
-- random bits, so the hash is as good as a password hash and lookups stay one index
-- probe). A login starts a family; each refresh spends its token and adds the next one.
-- Presenting a spent token revokes the whole family (someone else holds its successor).
-- Looked up by hash before any tenant is known, so outside row-level security, like the
-- revocation list; it holds no tenant data, only the user's id (the user directory knows
-- their tenant).
CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens TO chronicle_app;

-- Ended families (logout, theft detected, deactivation, password change): their refresh
-- tokens are refused, and so are the access tokens issued from them (claim `sid`), on
-- every instance through the revocation list (same channel as revoked tokens).
CREATE TABLE revoked_sessions (
    family_id  uuid        PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    reason     text        NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON revoked_sessions TO chronicle_app;
CREATE FUNCTION notify_session_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_revocations', NEW.family_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER session_revoked
    AFTER INSERT OR UPDATE ON revoked_sessions
    FOR EACH ROW EXECUTE FUNCTION notify_session_revoked();

-- An abandoned sign-up's registry row is deleted: every instance must forget it too.
CREATE OR REPLACE FUNCTION notify_tenant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_tenants', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END
$$;
CREATE TRIGGER tenant_removed
    AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();
