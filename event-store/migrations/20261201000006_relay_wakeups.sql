-- The relay's wake-up, made conditional. Every appending statement used to pg_notify, and
-- PostgreSQL serializes the commits of notifying transactions on its notification queue:
-- under load that cost a quarter of the write throughput. Now the relay polls while the log
-- is busy (a few milliseconds apart) and asks to be notified only once it has gone idle;
-- appends notify only then.

-- One row: whether the active relay is idle and waiting for a notification. Unlogged: it is
-- a hint, rewritten by the relay whenever it changes mode, and a crash that empties it only
-- means no notifications until the relay next goes idle (it also polls, slowly).
CREATE UNLOGGED TABLE relay_wakeup (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    listening boolean NOT NULL
);
-- No relay is waiting until one says so.
INSERT INTO relay_wakeup (singleton, listening) VALUES (true, false);
GRANT SELECT, INSERT, UPDATE ON relay_wakeup TO chronicle_app;

CREATE OR REPLACE FUNCTION notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce((SELECT listening FROM public.relay_wakeup), false) THEN
        PERFORM pg_notify('chronicle_events_appended', '');
    END IF;
    RETURN NULL;
END
$$;
