-- Approval policies (DESIGN.md, "Batches"): a rule that requires more of
-- a requirement's deciders (a larger quorum, its own approvers) is written
-- into the pending requirement's deciders by the approver when it records
-- it, so that what the API shows (quorum, who may decide) says so. Each
-- decision applies the rule from the approver's own agents file again: a
-- decision made before the rule was written still meets it.
GRANT UPDATE (deciders) ON requirements TO sluice_approver;
