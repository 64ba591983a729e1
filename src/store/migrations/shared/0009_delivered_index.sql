-- The purge's index holds delivered rows only (issue 14): a full index on
-- received_at took a page of its own in every commit of a new callback
-- (one of seven WAL frames a callback stored alone writes); a callback
-- enters this one when it is delivered, a write that is batched and
-- nobody waits on. The purge asks for `status = 'delivered'`, which this
-- index's WHERE matches.
DROP INDEX callbacks_received;
CREATE INDEX callbacks_delivered ON callbacks (received_at) WHERE status = 'delivered';
