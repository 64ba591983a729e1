-- The (status, seq) index holds settled rows only (issue 14): it took a
-- page of its own in every commit of a new (pending) callback. Pending
-- rows are counted through callbacks_due, which holds exactly them; every
-- statement that reads this index names a settled status and states this
-- index's WHERE (src/store/sql.rs, SETTLED), which is how SQLite's planner
-- knows a partial index holds the rows asked for.
DROP INDEX callbacks_status_seq;
CREATE INDEX callbacks_settled ON callbacks (status, seq)
    WHERE status = 'delivered' OR status = 'dead' OR status = 'rejected' OR status = 'unroutable';
