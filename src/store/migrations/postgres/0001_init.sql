-- payrelay's durable outbox on PostgreSQL: the same tables as on SQLite
-- (0001 + 0002 there), every integer 64-bit as SQLite's are, so that one
-- mapping (store/rows.rs) reads both. Times are unix milliseconds.
CREATE TABLE callbacks (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    provider        TEXT NOT NULL,
    tenant          TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'rejected', 'unroutable')),
    content_type    TEXT,
    body            BYTEA NOT NULL,
    remote_addr     TEXT,
    simulated       BOOLEAN NOT NULL DEFAULT FALSE,
    -- the provider's business key (resends share it); NULL when not deduplicated
    dedup_key       TEXT,
    received_at     BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    finished_at     BIGINT,
    path_tenant     TEXT
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE status = 'pending';
CREATE INDEX callbacks_status_seq ON callbacks (status, seq);
CREATE INDEX callbacks_received ON callbacks (received_at);
-- Dedup across every instance: one callback per key. Two instances
-- inserting the same key at once: the second waits for the first and
-- then finds the row.
CREATE UNIQUE INDEX callbacks_dedup ON callbacks (provider, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE attempts (
    callback_seq     BIGINT NOT NULL REFERENCES callbacks (seq) ON DELETE CASCADE,
    n                BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    status_code      BIGINT,
    duration_ms      BIGINT NOT NULL,
    error            TEXT,
    response_excerpt TEXT,
    outcome          TEXT NOT NULL,
    next_at          BIGINT,
    PRIMARY KEY (callback_seq, n)
);
