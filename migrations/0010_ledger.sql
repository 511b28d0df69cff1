-- The audit ledger (DESIGN.md, "Audit ledger and approval receipts").
-- Every change of an approval's life is queued here in the transaction of
-- the change; the approver's chainer moves queued entries, shortly after
-- they commit, into the ledger: numbered without gaps and hash-chained,
-- hash = SHA-256(previous entry's hash || RFC 8785 canonical entry). One
-- chainer at a time (an advisory lock), so writers never wait on a chain
-- head; an entry is never lost (it leaves the queue in the transaction
-- that chains it) and never chained before an entry it follows (a change
-- that follows another begins after that one committed, and the chainer
-- takes the queue in order).
CREATE TABLE ledger_queue (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    run_id         text,
    requirement_id text,
    actor          text NOT NULL,
    body           jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE ledger (
    seq            bigint PRIMARY KEY CHECK (seq > 0),
    kind           text NOT NULL,
    -- RFC 3339, UTC, microseconds: the text the hash covers
    at             text NOT NULL,
    run_id         text,
    requirement_id text,
    actor          text NOT NULL,
    body           jsonb NOT NULL,
    hash           text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
-- One index besides the key: a requirement's entries are its run's too
-- (GET /v1/audit?requirement_id= goes through its run), and every index
-- here is written three times a run.
CREATE INDEX ledger_run_idx ON ledger (run_id, seq);

-- Append-only: no role, the owner's included, updates or deletes an
-- entry without first dropping this trigger (which a superuser can do;
-- the hash chain and the signed checkpoints show it then).
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Both services queue entries; only the approver chains them; no service
-- updates or deletes a ledger entry.
GRANT INSERT ON ledger_queue TO sluice_worker, sluice_approver;
GRANT USAGE ON SEQUENCE ledger_queue_id_seq TO sluice_worker, sluice_approver;
GRANT SELECT, DELETE ON ledger_queue TO sluice_approver;
GRANT SELECT, INSERT ON ledger TO sluice_approver;
GRANT SELECT ON ledger, ledger_queue TO sluice_reader;
