-- Signed checkpoints of the ledger (DESIGN.md, "Audit ledger and approval
-- receipts"): the approver's chainer signs the ledger's size and head at
-- least every 10 s while entries are added, as a C2SP signed note
-- (shared/sl_ledger.h). A checkpoint kept elsewhere too shows a ledger
-- rewritten or cut short before it. Append-only, as the ledger.
CREATE TABLE ledger_checkpoints (
    tree_size bigint PRIMARY KEY CHECK (tree_size > 0),
    head      text NOT NULL CHECK (head ~ '^[0-9a-f]{64}$'),
    kid       text NOT NULL,
    note      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
GRANT SELECT, INSERT ON ledger_checkpoints TO sluice_approver;
GRANT SELECT ON ledger_checkpoints TO sluice_reader;
