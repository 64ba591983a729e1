-- Recurring (periodic credit card) orders in the ledger (SPEC §9): how long
-- after a payment the reconciler looks for the next period (the period
-- plus [reconcile] after), and how many periods the order has.
ALTER TABLE orders ADD COLUMN period_ms BIGINT;
ALTER TABLE orders ADD COLUMN exec_times BIGINT;
