-- Chronicle: database roles and the `chronicle` database.
--
-- Run by psql as a superuser, connected to any database (normally `postgres`):
--   * natively by `./dev up` (over the project cluster's unix socket), on every `up`;
--   * by the postgres image's entrypoint from /docker-entrypoint-initdb.d on a fresh volume
--     (`./dev up` also re-applies it under Docker Compose).
-- Idempotent: safe to run any number of times; it re-asserts role attributes, and sets a
-- password only when it creates the role.
-- Uses psql's \gexec, so it must be run by psql (not by a driver).
--
-- Schema, tables, grants and row-level security belong to the migrations (run as
-- chronicle_owner), not here.

\set ON_ERROR_STOP on

-- The roles. A role is created with the development password (its own name) when it does
-- not exist yet; an existing role's password is never touched, so running this against a
-- deployment whose passwords were changed leaves them as they are. Attributes are
-- re-asserted on every run: a role edited by hand is put back to what the project expects.
--
-- chronicle_owner: owns the database and schema, runs migrations. CREATEDB because the test
-- suite creates a scratch database per test (chronicle_test_*). Never superuser, never BYPASSRLS.
-- chronicle_app: the command API. Not the owner, so forced row-level security applies to it;
-- no privileges beyond what the migrations grant (and no read of the global log).
-- chronicle_relay: the relay, the one role that reads the global log across tenants and
-- moves the relay checkpoint.
-- chronicle_projector: the projector: tenant-scoped reads of the store, the read model,
-- and the global log through its function (replay, catch-up, verification).
DO $$
DECLARE
    role text;
BEGIN
    FOREACH role IN ARRAY ARRAY['chronicle_owner', 'chronicle_app', 'chronicle_relay', 'chronicle_projector'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role) THEN
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', role, role);
        END IF;
    END LOOP;
END
$$;
ALTER ROLE chronicle_owner WITH LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOREPLICATION;
ALTER ROLE chronicle_app WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE chronicle_relay WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE chronicle_projector WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;

-- The database (CREATE DATABASE cannot run inside a DO block / transaction, hence \gexec).
SELECT 'CREATE DATABASE chronicle OWNER chronicle_owner ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'chronicle')
\gexec

ALTER DATABASE chronicle OWNER TO chronicle_owner;
GRANT CONNECT, TEMPORARY ON DATABASE chronicle TO chronicle_app, chronicle_relay, chronicle_projector;

-- The test harness drops each scratch database (chronicle_test_*) WITH (FORCE), which ends
-- the app role's connections to it: that needs the right to signal other roles' backends.
GRANT pg_signal_backend TO chronicle_owner;
