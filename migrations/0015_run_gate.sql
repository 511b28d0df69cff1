-- Back-pressure on people (DESIGN.md, "Batches"): an agent's
-- max_pending_approvals. A worker starts a run of such an agent only while
-- its pending requirements and its runs started but not yet paused or
-- finished (which may yet add one each) are fewer than the limit, counted
-- under an advisory lock per agent, so that two workers cannot both take
-- the last place. Each such start holds a row here until its run first
-- pauses or finishes (in the same statements); a row older than 15 minutes
-- (its run stuck or gone) no longer counts.
CREATE TABLE run_gate (
    run_id     text PRIMARY KEY,
    agent_id   text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_gate_agent_idx ON run_gate (agent_id, started_at);
GRANT SELECT, INSERT, DELETE ON run_gate TO sluice_worker;
GRANT SELECT ON run_gate TO sluice_approver, sluice_reader;
