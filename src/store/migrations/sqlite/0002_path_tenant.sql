-- The tenant named in the callback's path (/{provider}/notify/{tenant_id}),
-- kept so that an unroutable callback can be routed afresh on replay the way
-- it came in.
ALTER TABLE callbacks ADD COLUMN path_tenant TEXT;
