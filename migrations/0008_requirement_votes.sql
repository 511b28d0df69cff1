-- Votes on a requirement whose tool asks for a quorum (DESIGN.md, "Who may
-- decide"): one per identity; the requirement resolves when that many have
-- confirmed, or on the first rejection. The approval row's
-- resolution_data.votes lists them.
CREATE TABLE requirement_votes (
    requirement_id text NOT NULL REFERENCES requirements (id),
    voter          text NOT NULL,
    confirmed      boolean NOT NULL,
    note           text,
    voted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (requirement_id, voter)
);
