-- Chronicle: database roles and the `chronicle` database.
--
-- Run by psql as a superuser, connected to any database (normally `postgres`):
--   * natively by `./dev up` (over the project cluster's unix socket), on every `up`;
--   * by the postgres image's entrypoint from /docker-entrypoint-initdb.d on a fresh volume
--     (`./dev up` also re-applies it under Docker Compose).
-- Idempotent: safe to run any number of times; it also re-asserts role attributes and
-- passwords, so a role edited by hand is put back to what the project expects.
-- Uses psql's \gexec, so it must be run by psql (not by a driver).
--
-- Schema, tables, grants and row-level security belong to the migrations (run as
-- chronicle_owner), not here.

\set ON_ERROR_STOP on

-- chronicle_owner: owns the database and schema, runs migrations. CREATEDB because the test
-- suite creates a scratch database per test (chronicle_test_*). Never superuser, never BYPASSRLS.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'chronicle_owner') THEN
        CREATE ROLE chronicle_owner;
    END IF;
END
$$;
ALTER ROLE chronicle_owner WITH LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOREPLICATION
    PASSWORD 'chronicle_owner';

-- chronicle_app: what the services connect as. Not the owner, so forced row-level security
-- applies to it; no privileges beyond what the migrations grant.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'chronicle_app') THEN
        CREATE ROLE chronicle_app;
    END IF;
END
$$;
ALTER ROLE chronicle_app WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD 'chronicle_app';

-- The database (CREATE DATABASE cannot run inside a DO block / transaction, hence \gexec).
SELECT 'CREATE DATABASE chronicle OWNER chronicle_owner ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'chronicle')
\gexec

ALTER DATABASE chronicle OWNER TO chronicle_owner;
GRANT CONNECT, TEMPORARY ON DATABASE chronicle TO chronicle_app;

-- The test harness drops each scratch database (chronicle_test_*) WITH (FORCE), which ends
-- the app role's connections to it: that needs the right to signal other roles' backends.
GRANT pg_signal_backend TO chronicle_owner;
