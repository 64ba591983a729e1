-- payrelay's durable outbox: every callback received, every delivery attempt,
-- and the dedup index. Times are unix milliseconds.
CREATE TABLE callbacks (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    provider        TEXT NOT NULL,
    tenant          TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'rejected', 'unroutable')),
    content_type    TEXT,
    body            BLOB NOT NULL,
    remote_addr     TEXT,
    simulated       INTEGER NOT NULL DEFAULT 0,
    received_at     INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE status = 'pending';
CREATE INDEX callbacks_status_seq ON callbacks (status, seq);
CREATE INDEX callbacks_received ON callbacks (received_at);

CREATE TABLE attempts (
    callback_seq     INTEGER NOT NULL REFERENCES callbacks (seq) ON DELETE CASCADE,
    n                INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (callback_seq, n)
);

CREATE TABLE dedup (
    provider    TEXT NOT NULL,
    key         TEXT NOT NULL,
    seen_at     INTEGER NOT NULL,
    callback_id TEXT NOT NULL,
    PRIMARY KEY (provider, key)
);
CREATE INDEX dedup_seen ON dedup (seen_at);
