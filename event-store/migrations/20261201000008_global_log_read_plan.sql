-- The global log is read a page at a time, in (transaction id, position) order, which is
-- the order of the index events_global_log: an index scan that stops after the page. Planned
-- inside a function, with the page's bounds unknown, PostgreSQL may instead pick a bitmap
-- scan of everything after the checkpoint and sort it, which makes every page cost the whole
-- backlog (quadratic while the relay catches up: measured, most of its time). These two
-- settings, for this function only, leave the ordered index scan as the plan.
ALTER FUNCTION read_global_log(xid8, bigint, integer) SET enable_bitmapscan = off;
ALTER FUNCTION read_global_log(xid8, bigint, integer) SET enable_sort = off;
