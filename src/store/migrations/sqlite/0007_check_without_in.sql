-- SQLite builds a temporary index for an IN list of more than two values
-- each time a statement checks it: every insert of a callback or an order,
-- every status change paid for it (a b-tree opened, a 4 KiB page zeroed):
-- a tenth of a checkout's CPU (issue 14). The same two CHECKs spelled as
-- comparisons allow exactly the same values without it.
--
-- A CHECK is changed in place as SQLite documents for it (ALTER TABLE,
-- "making other kinds of table schema changes"): the stored CREATE TABLE
-- text is edited, nothing on disk moves. A text that does not match (a
-- table made some other way) is left as it is. The view made and dropped
-- after it changes the schema cookie, so that every other connection
-- reads the new schema.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (status IN (''pending'', ''delivered'', ''dead'', ''rejected'', ''unroutable''))',
       'CHECK (status = ''pending'' OR status = ''delivered'' OR status = ''dead'' OR status = ''rejected'' OR status = ''unroutable'')')
 WHERE type = 'table' AND name = 'callbacks';
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (state IN (''checkout'', ''code_issued'', ''paid'', ''failed'', ''expired''))',
       'CHECK (state = ''checkout'' OR state = ''code_issued'' OR state = ''paid'' OR state = ''failed'' OR state = ''expired'')')
 WHERE type = 'table' AND name = 'orders';
PRAGMA writable_schema = RESET;
CREATE VIEW payrelay_schema_changed AS SELECT 1;
DROP VIEW payrelay_schema_changed;
