-- bench/run --breakdown: where a run's time went, hop by hop, as medians
-- (ms) over the runs created since :'t0', from PostgreSQL's own clocks.
-- now() is a transaction's start; a row's commit time comes from
-- track_commit_timestamp, through the outbox's ins_xid column that
-- bench/run adds (the sent mark's update takes the row's xmin). sent_at is
-- when the row was marked sent: its writer's relay marks it once Kafka has
-- it (the relay's own take, for a row no writer published).
\pset footer off
WITH o AS (
  SELECT key, topic, created_at AS written, sent_at AS marked,
         pg_xact_commit_timestamp(ins_xid::text::xid) AS committed
  FROM outbox WHERE created_at >= :'t0'),
r AS (
  SELECT u.run_id, u.created_at AS started, q.resolved_at AS decided,
         e.started_at AS claimed, e.finished_at AS tool_done, u.updated_at AS finished
  FROM runs u
  JOIN requirements q ON q.run_id = u.run_id AND q.pause_seq = 1
  JOIN tool_executions e ON e.run_id = u.run_id
  WHERE u.created_at >= :'t0' AND u.status = 'completed'),
h AS (
  SELECT 'pause: transaction' AS hop, 1 AS n, o.committed - o.written AS d FROM o WHERE topic LIKE '%approvals'
  UNION ALL SELECT 'pause: commit -> marked sent', 2, o.marked - o.committed FROM o WHERE topic LIKE '%approvals'
  UNION ALL SELECT 'decision: transaction', 3, o.committed - o.written FROM o WHERE topic LIKE '%continues'
  UNION ALL SELECT 'decision: commit -> marked sent', 4, o.marked - o.committed FROM o WHERE topic LIKE '%continues'
  UNION ALL SELECT 'continue: commit -> claim (publish, Kafka, the worker)', 5, r.claimed - o.committed FROM o JOIN r ON r.run_id = o.key WHERE topic LIKE '%continues'
  UNION ALL SELECT 'claim -> tool result', 6, r.tool_done - r.claimed FROM r
  UNION ALL SELECT 'tool result -> final write', 7, r.finished - r.tool_done FROM r
  UNION ALL SELECT 'final: transaction', 8, o.committed - o.written FROM o WHERE topic LIKE '%results'
  UNION ALL SELECT 'decision -> final write (total)', 9, r.finished - r.decided FROM r)
SELECT hop, count(*) AS runs,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d)) * 1000)::numeric, 2) AS p50_ms,
       round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d)) * 1000)::numeric, 2) AS p99_ms
FROM h GROUP BY hop, n ORDER BY n;
