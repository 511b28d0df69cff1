-- Notifications (DESIGN.md, "Batches"): a webhook's deliveries, written in
-- the transaction of what they tell (a requirement recorded, decided or
-- expired; a run's end, when the approver consumes its event), once per
-- webhook and message id, then POSTed by the approvers' senders until the
-- receiver answers 2xx: with back-off, given up (failed_at) only after
-- about eight hours. A receiver that is down loses nothing meanwhile.
CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    hook         text NOT NULL,
    msg_id       text NOT NULL,
    event        text NOT NULL,
    payload      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    next_at      timestamptz NOT NULL DEFAULT now(),
    attempts     int NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    failed_at    timestamptz,
    last_error   text,
    UNIQUE (hook, msg_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO sluice_approver;
GRANT USAGE ON SEQUENCE webhook_deliveries_id_seq TO sluice_approver;
GRANT SELECT ON webhook_deliveries TO sluice_reader;
