-- Verification by query (SPEC §8), the same on SQLite and PostgreSQL: what
-- the provider's query API said of the callback ('confirmed',
-- 'contradicted', 'not_yet', 'unavailable'; NULL: not asked), why, with an
-- excerpt of its answer, and how many queries counted against the schedule.
ALTER TABLE callbacks ADD COLUMN verified TEXT;
ALTER TABLE callbacks ADD COLUMN verify_detail TEXT;
ALTER TABLE callbacks ADD COLUMN verify_tries BIGINT NOT NULL DEFAULT 0;
