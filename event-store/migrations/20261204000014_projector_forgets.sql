-- The projector forgets a subject (the hook erasure builds on): it deletes a customer's row
-- from the read model. Row-level security keeps the delete inside the tenant the
-- transaction set, as for its other writes. Replay copies the live table's grants onto each
-- generation it builds, so rebuilt tables carry this too.
GRANT DELETE ON customer_views TO chronicle_projector;
