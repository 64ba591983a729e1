-- SQLite's planner never used callbacks_order_key: the console's search
-- (`order_key = ? OR id = ?` beside `? IS NULL`) is planned once for any
-- value, so it reads the table newest first, to its LIMIT. Yet a new
-- callback put an entry in it, at a random place: a WAL page of its own in
-- nearly every commit (issue 14). PostgreSQL plans the search with the
-- value known and keeps the index.
DROP INDEX IF EXISTS callbacks_order_key;
