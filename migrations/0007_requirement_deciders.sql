-- Who may decide a requirement, as its tool said when the run paused
-- (DESIGN.md, "Who may decide"): {"approvers": {"users": [...], "groups":
-- [...]} or null (every approver), "self_approval": bool}. The approver
-- checks it against the caller and the run's user_id; '{}' (rows from
-- before) is every approver, and not the run's own user.
ALTER TABLE requirements ADD COLUMN deciders jsonb NOT NULL DEFAULT '{}';
