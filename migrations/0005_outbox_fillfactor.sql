-- The relay marks each outbox row sent: an update that cannot be HOT (the
-- unsent rows' partial index has sent_at in its predicate). On a full page
-- the new version goes to another page and the whole row (the event, some
-- 600 bytes) is written to the WAL again; on the same page PostgreSQL logs
-- only what changed. Half of each page is left for those new versions.
ALTER TABLE outbox SET (fillfactor = 50);
