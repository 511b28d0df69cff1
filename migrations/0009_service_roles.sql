-- One database role per service, with only what it needs (DESIGN.md, "Who
-- may decide"): a worker (or a tool that reached its credentials) cannot
-- write a decision, a vote or a resolved approval; the approver cannot
-- write tool executions; sluice_reader reads, for reports. The roles are
-- created here when they do not exist (which takes CREATEROLE); a DBA may
-- create them beforehand, with passwords, and this only grants. They are
-- the cluster's, so databases of one cluster share them. The migrations'
-- own role keeps owning every table, so a later migration that adds a
-- table, or a column a service writes, grants it to these roles as here.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['sluice_worker', 'sluice_approver', 'sluice_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', r);
    END LOOP;
END
$$;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO sluice_reader;

-- Both services: their events in and out (the outbox relay marks rows
-- sent, or unsent again; pruning deletes old ones).
GRANT SELECT, INSERT, DELETE ON outbox, processed_events
    TO sluice_worker, sluice_approver;
GRANT UPDATE (sent_at) ON outbox TO sluice_worker, sluice_approver;
GRANT USAGE ON SEQUENCE outbox_id_seq TO sluice_worker, sluice_approver;

-- The worker: starts, pauses, resumes and finishes runs, records the
-- requirements of a pause (never their decisions: status stays its
-- default, 'pending'), claims and completes tool executions, and opens the
-- pending approval row of a required approval, which only the approver
-- resolves.
GRANT SELECT ON runs, requirements, tool_executions TO sluice_worker;
GRANT INSERT (run_id, session_id, agent_id, user_id, status, input, messages) ON runs
    TO sluice_worker;
GRANT UPDATE (status, messages, output, error, pause_seq, claim_event, version, updated_at)
    ON runs TO sluice_worker;
GRANT INSERT (id, run_id, pause_seq, position, tool_call_id, tool_name, tool_args,
              needs_confirmation, needs_user_input, user_input_schema, external_execution,
              approval_type, expires_at, tool_schema, deciders)
    ON requirements TO sluice_worker;
GRANT INSERT (id, run_id, session_id, requirement_id, agent_id, user_id, approval_type,
              pause_type, status, tool_name, tool_args, expires_at, run_status)
    ON approvals TO sluice_worker;
GRANT INSERT, UPDATE ON tool_executions TO sluice_worker;

-- The approver: reads runs and their requirements, records decisions,
-- votes and approval rows, cancels runs.
GRANT SELECT ON runs, requirements, approvals, requirement_votes TO sluice_approver;
GRANT UPDATE (status, error, version, updated_at) ON runs TO sluice_approver;
GRANT UPDATE (status, confirmed, edited_args, note, user_input, external_result,
              resolved_by, resolved_at)
    ON requirements TO sluice_approver;
GRANT INSERT, UPDATE ON approvals TO sluice_approver;
GRANT INSERT ON requirement_votes TO sluice_approver;

-- A worker's approval row can only be a pending one: the column grants keep
-- it from setting a resolution, and this policy from setting a status.
ALTER TABLE approvals ENABLE ROW LEVEL SECURITY;
CREATE POLICY approvals_read ON approvals FOR SELECT USING (true);
CREATE POLICY approvals_worker_opens ON approvals FOR INSERT TO sluice_worker
    WITH CHECK (status = 'pending');
CREATE POLICY approvals_approver_writes ON approvals FOR ALL TO sluice_approver
    USING (true) WITH CHECK (true);
