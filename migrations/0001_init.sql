-- Sluice schema, version 1. PostgreSQL is the source of truth; Kafka only
-- carries notifications of what happened here.

CREATE TABLE runs (
    run_id      text PRIMARY KEY,
    session_id  text NOT NULL,
    agent_id    text NOT NULL,
    user_id     text,
    status      text NOT NULL CHECK (status IN
                ('queued', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    input       text NOT NULL,
    messages    jsonb NOT NULL DEFAULT '[]',
    output      text,
    error       text,
    -- Incremented on every pause; requirements of the current pause share it.
    pause_seq   integer NOT NULL DEFAULT 0,
    -- The continue event that moved the run from paused to running: its
    -- redelivery (after a worker died) resumes the run; any other is refused.
    claim_event text,
    version     integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_status_idx ON runs (status);
CREATE INDEX runs_session_idx ON runs (session_id);

CREATE TABLE requirements (
    id                 text PRIMARY KEY,
    run_id             text NOT NULL REFERENCES runs (run_id),
    pause_seq          integer NOT NULL,
    position           integer NOT NULL,
    tool_call_id       text NOT NULL,
    tool_name          text NOT NULL,
    tool_args          jsonb NOT NULL,
    needs_confirmation boolean NOT NULL,
    needs_user_input   boolean NOT NULL DEFAULT false,
    user_input_schema  jsonb NOT NULL DEFAULT '[]',
    external_execution boolean NOT NULL DEFAULT false,
    approval_type      text CHECK (approval_type IN ('required', 'audit')),
    pause_type         text NOT NULL GENERATED ALWAYS AS (CASE
                           WHEN needs_user_input THEN 'user_input'
                           WHEN external_execution THEN 'external_execution'
                           ELSE 'confirmation' END) STORED,
    -- The tool's JSON schema at the pause, to check edited arguments.
    tool_schema        jsonb NOT NULL DEFAULT '{}',
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'resolved', 'expired', 'cancelled')),
    confirmed          boolean,
    -- Arguments edited by the person who confirmed (NULL: as the model gave them).
    edited_args        jsonb,
    note               text,
    user_input         jsonb,
    external_result    text,
    resolved_by        text,
    resolved_at        timestamptz,
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, tool_call_id)
);
CREATE INDEX requirements_run_idx ON requirements (run_id, pause_seq);
CREATE INDEX requirements_status_idx ON requirements (status, created_at);
CREATE INDEX requirements_due_idx ON requirements (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;

CREATE TABLE approvals (
    id              text PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (run_id),
    session_id      text NOT NULL,
    requirement_id  text NOT NULL UNIQUE REFERENCES requirements (id),
    agent_id        text NOT NULL,
    user_id         text,
    source_type     text NOT NULL DEFAULT 'agent',
    approval_type   text NOT NULL CHECK (approval_type IN ('required', 'audit')),
    pause_type      text NOT NULL CHECK (pause_type IN
                    ('confirmation', 'user_input', 'external_execution')),
    status          text NOT NULL CHECK (status IN
                    ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    tool_name       text NOT NULL,
    tool_args       jsonb NOT NULL,
    resolution_data jsonb,
    resolved_by     text,
    resolved_at     timestamptz,
    expires_at      timestamptz,
    run_status      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approvals_created_idx ON approvals (created_at DESC, id DESC);
CREATE INDEX approvals_status_idx ON approvals (status, created_at DESC);
CREATE INDEX approvals_type_idx ON approvals (approval_type, created_at DESC);
CREATE INDEX approvals_run_idx ON approvals (run_id);
CREATE INDEX approvals_session_idx ON approvals (session_id);
CREATE INDEX approvals_user_idx ON approvals (user_id, status);

-- A tool call is claimed here before it runs, so it runs at most once even
-- when the event that caused it is delivered again.
CREATE TABLE tool_executions (
    run_id       text NOT NULL,
    tool_call_id text NOT NULL,
    tool_name    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('started', 'done')),
    result       text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (run_id, tool_call_id)
);

-- Events written in the transaction of the state change that causes them.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

-- Consumed events, written in the transaction of their effect.
CREATE TABLE processed_events (
    consumer     text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
