-- payrelay's durable outbox: every callback received, every delivery attempt,
-- and the dedup index. Times are unix milliseconds.
CREATE TABLE callbacks (
    seq             INTEGER PRIMARY KEY,  -- no AUTOINCREMENT: its bookkeeping dirties a page (an fsync) even when a duplicate inserts nothing
    id              TEXT NOT NULL UNIQUE,
    provider        TEXT NOT NULL,
    tenant          TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'rejected', 'unroutable')),
    content_type    TEXT,
    body            BLOB NOT NULL,
    remote_addr     TEXT,
    simulated       INTEGER NOT NULL DEFAULT 0,
    -- the provider's business key (resends share it); NULL when not deduplicated
    dedup_key       TEXT,
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
-- Dedup: one callback per key. A key older than dedup_window is cleared
-- from its row when the same key comes again, so the new one is accepted.
CREATE UNIQUE INDEX callbacks_dedup ON callbacks (provider, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE attempts (
    callback_seq     INTEGER NOT NULL REFERENCES callbacks (seq) ON DELETE CASCADE,
    n                INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    response_excerpt TEXT,
    -- what followed: 'delivered', 'pending' (again at next_at) or 'dead'
    outcome          TEXT NOT NULL,
    next_at          INTEGER,
    PRIMARY KEY (callback_seq, n)
);

-- Recording an attempt moves its callback on in the same statement. Only a
-- pending callback moves: one replayed or finished meanwhile keeps its
-- state (the late attempt is still kept).
CREATE TRIGGER attempts_apply AFTER INSERT ON attempts BEGIN
    UPDATE callbacks
       SET status = NEW.outcome, attempts = max(attempts, NEW.n), next_attempt_at = NEW.next_at,
           lease_owner = NULL, lease_until = NULL, last_error = NEW.error,
           finished_at = CASE NEW.outcome WHEN 'pending' THEN NULL ELSE NEW.at + NEW.duration_ms END
     WHERE seq = NEW.callback_seq AND status = 'pending';
END;
