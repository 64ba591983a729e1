-- Recording an attempt moves its callback on: that rule now lives in one
-- statement shared with PostgreSQL (src/store/sql.rs, APPLY_HEAD), so the
-- trigger that did it on SQLite alone goes.
DROP TRIGGER IF EXISTS attempts_apply;
