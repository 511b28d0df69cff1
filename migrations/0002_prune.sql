-- Pruning (sl_outbox_prune): processed_events rows are deleted by age.
-- They are appended in time order, so a BRIN index finds the old ones for
-- almost no upkeep on insert. Sent outbox rows are deleted along the
-- primary key, which needs no new index.
CREATE INDEX processed_events_age_idx ON processed_events USING brin (processed_at);
