-- Approval receipts (DESIGN.md, "Audit ledger and approval receipts"): the
-- approver signs each decision (a compact JWS, shared/sl_keys.h) and stores
-- it with the requirement; a worker runs a confirmed tool only when its
-- receipt verifies, names this requirement and covers the arguments the
-- tool would run with. A decision written here by hand has none.
ALTER TABLE requirements ADD COLUMN receipt text;
GRANT UPDATE (receipt) ON requirements TO sluice_approver;
