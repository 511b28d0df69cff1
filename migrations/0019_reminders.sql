-- Expiry actions and escalation (DESIGN.md, "Batches"): when a pending
-- requirement's tool asks for a reminder (remind_after) or an escalation
-- (escalate_after: more approvers) the approver records when it made them;
-- an escalation also widens the requirement's approvers (deciders, 0013).
ALTER TABLE requirements ADD COLUMN reminded_at timestamptz, ADD COLUMN escalated_at timestamptz;
GRANT UPDATE (reminded_at, escalated_at) ON requirements TO sluice_approver;
