-- Grants (DESIGN.md, "Batches"): "always allow for this run / session". A
-- person's confirmation may carry one; later requirements of the same
-- agent's tool in that run or session, whose arguments match, are approved
-- by the grant (resolved_by grant:ID) when the approver records them,
-- until the grant expires or is revoked.
CREATE TABLE grants (
    id             text PRIMARY KEY,
    scope          text NOT NULL CHECK (scope IN ('run', 'session')),
    scope_id       text NOT NULL,
    agent_id       text NOT NULL,
    tool_name      text NOT NULL,
    -- {JSON pointer: value}: each argument the pointer names must equal the value
    args           jsonb NOT NULL DEFAULT '{}',
    granted_by     text NOT NULL,
    requirement_id text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_by     text
);
CREATE INDEX grants_scope_idx ON grants (scope_id, tool_name) WHERE revoked_at IS NULL;
CREATE INDEX grants_created_idx ON grants (created_at DESC, id DESC);
GRANT SELECT, INSERT ON grants TO sluice_approver;
GRANT UPDATE (revoked_at, revoked_by) ON grants TO sluice_approver;
GRANT SELECT ON grants TO sluice_reader;
