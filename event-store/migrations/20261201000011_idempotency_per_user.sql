-- Idempotency keys belong to the user who sent them as well as to the tenant: one user's
-- key can neither replay nor collide with another user's request. Fingerprints become an
-- HMAC under a server secret (a body may hold a new user's password).
--
-- Rows recorded before this migration carry the nil user, which no caller has: they are
-- never replayed again, and expire within 24 hours as usual (their fingerprints, plain
-- digests, could not be compared with the new ones anyway). A retry that crosses the
-- upgrade runs as a new request: upgrade when clients are not retrying.
ALTER TABLE idempotency_keys
    ADD COLUMN user_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE idempotency_keys ALTER COLUMN user_id DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, user_id, idempotency_key);

ALTER TABLE platform_idempotency_keys
    ADD COLUMN user_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE platform_idempotency_keys ALTER COLUMN user_id DROP DEFAULT;
ALTER TABLE platform_idempotency_keys DROP CONSTRAINT platform_idempotency_keys_pkey;
ALTER TABLE platform_idempotency_keys ADD PRIMARY KEY (user_id, idempotency_key);
