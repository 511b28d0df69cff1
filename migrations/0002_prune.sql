-- Pruning (sl_outbox_prune) deletes sent outbox rows and processed_events
-- rows by age. Both tables are appended to in time order, so BRIN indexes
-- find the old rows for almost no upkeep on insert; autosummarize keeps
-- them current between vacuums.
CREATE INDEX outbox_age_idx ON outbox USING brin (created_at) WITH (autosummarize = on);
CREATE INDEX processed_events_age_idx ON processed_events USING brin (processed_at)
    WITH (autosummarize = on);
