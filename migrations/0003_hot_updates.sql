-- A run's row is updated three times in its life (paused, running again,
-- completed), a tool execution's once (done). An update that changes no
-- indexed column and finds room on its page is HOT: no new index entries,
-- and the old version is pruned with the page. runs_status_idx made every
-- status change a non-HOT update (three new entries in each of the table's
-- indexes per run) and no query reads runs by status, so it goes; and both
-- tables leave room on each page for their rows' next versions.
DROP INDEX runs_status_idx;
ALTER TABLE runs SET (fillfactor = 70);
ALTER TABLE tool_executions SET (fillfactor = 80);
