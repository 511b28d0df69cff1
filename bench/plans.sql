-- The query plans of the statements on the hot path, on whatever the tables
-- hold (bench/run --prefill N --plans FILE). Each must be an index lookup,
-- not a scan that grows with the tables. Writes are rolled back.
\pset pager off
SELECT run_id AS rid, pause_seq AS seq FROM runs ORDER BY run_id DESC LIMIT 1 \gset
SELECT id AS qid FROM requirements WHERE run_id = :'rid' LIMIT 1 \gset
SELECT count(*) AS runs, (SELECT count(*) FROM requirements) AS requirements,
       (SELECT count(*) FROM approvals) AS approvals, (SELECT count(*) FROM outbox) AS outbox,
       (SELECT count(*) FROM processed_events) AS processed_events FROM runs;

\echo '-- worker: a continue reads the run and whether the event was processed'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT status, messages, pause_seq, agent_id, session_id, user_id, claim_event,
       EXISTS (SELECT 1 FROM processed_events WHERE consumer = 'sluice-worker' AND event_id = 'x')
FROM runs WHERE run_id = :'rid';

\echo '-- worker: the requirements of a pause'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, tool_call_id, tool_name, tool_args, status, confirmed FROM requirements
WHERE run_id = :'rid' AND pause_seq = :seq ORDER BY position;

\echo '-- worker: an outcome (the UPDATE of a completion, rolled back)'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
UPDATE runs SET version = version + 1, updated_at = now()
WHERE run_id = :'rid' AND NOT EXISTS
  (SELECT 1 FROM processed_events WHERE consumer = 'sluice-worker' AND event_id = 'x');
ROLLBACK;

\echo '-- worker: a tool run claimed'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status)
VALUES (:'rid', 'plan-call', 'delete_user_data', 'started') ON CONFLICT DO NOTHING;
ROLLBACK;

\echo '-- approver: a decision locks the run of a requirement'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT u.run_id, u.status, u.pause_seq FROM runs u JOIN requirements r ON r.run_id = u.run_id
WHERE r.id = :'qid' FOR UPDATE OF u;
ROLLBACK;

\echo '-- approver: are all requirements of the pause decided?'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT bool_or(status = 'pending') FROM requirements WHERE run_id = :'rid' AND pause_seq = :seq;

\echo '-- approver: the expiry sweeper, every second'
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM requirements WHERE status = 'pending' AND expires_at IS NOT NULL
AND expires_at <= now() ORDER BY expires_at LIMIT 100;

\echo '-- relays: the next unsent outbox rows'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id, topic, key, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 500
FOR UPDATE SKIP LOCKED;
ROLLBACK;

\echo '-- relays: pruning (rolled back)'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
DELETE FROM outbox WHERE ctid = ANY (ARRAY (SELECT ctid FROM outbox
WHERE created_at < now() - interval '1 hour' AND sent_at IS NOT NULL LIMIT 5000));
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
DELETE FROM processed_events WHERE ctid = ANY (ARRAY (SELECT ctid FROM processed_events
WHERE processed_at < now() - interval '7 days' LIMIT 5000));
ROLLBACK;
