-- Revocations are kept only until what they revoke would have expired anyway. The API's
-- housekeeping purges both lists as `chronicle_app`, so it needs DELETE on them (without
-- it the purge of ended sessions failed with `permission denied`, and revoked tokens were
-- never purged at all). Every instance reloads both lists filtered on `expires_at` on each
-- revocation notice, and the purge deletes by it: both scans want an index on the expiry.
CREATE INDEX revoked_sessions_by_expiry ON revoked_sessions (expires_at);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
GRANT DELETE ON revoked_sessions TO chronicle_app;
GRANT DELETE ON revoked_tokens TO chronicle_app;
