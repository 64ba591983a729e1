-- The order ledger (SPEC §9), the same on SQLite and PostgreSQL: every
-- relayed Funpoint checkout, its state, when the reconciler asks next and
-- who is asking (one instance at a time), and its timeline; callbacks
-- searchable by their order key, and marked with where they came from.
ALTER TABLE callbacks ADD COLUMN order_key TEXT;
ALTER TABLE callbacks ADD COLUMN source TEXT;
CREATE INDEX callbacks_order_key ON callbacks (order_key) WHERE order_key IS NOT NULL;

CREATE TABLE orders (
    tenant            TEXT NOT NULL,
    merchant_trade_no TEXT NOT NULL,
    merchant_id       TEXT,
    amount            BIGINT,
    payment_type      TEXT,
    state             TEXT NOT NULL CHECK (state IN ('checkout', 'code_issued', 'paid', 'failed', 'expired')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    next_query_at     BIGINT,
    query_tries       BIGINT NOT NULL DEFAULT 0,
    query_owner       TEXT,
    query_until       BIGINT,
    last_query        TEXT,
    reconciled_at     BIGINT,
    PRIMARY KEY (tenant, merchant_trade_no)
);
CREATE INDEX orders_due ON orders (next_query_at) WHERE next_query_at IS NOT NULL;
CREATE INDEX orders_created ON orders (created_at);

CREATE TABLE order_events (
    tenant            TEXT NOT NULL,
    merchant_trade_no TEXT NOT NULL,
    at                BIGINT NOT NULL,
    kind              TEXT NOT NULL,
    callback_id       TEXT,
    detail            TEXT
);
CREATE INDEX order_events_order ON order_events (tenant, merchant_trade_no, at);
