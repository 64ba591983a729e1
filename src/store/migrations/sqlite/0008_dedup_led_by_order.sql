-- Dedup keys led by their order's number (providers::led_by_order, issue 14):
-- the keys of Funpoint and TapPay callbacks stored before get the same lead
-- by the same rule, so that a resend arriving after the upgrade still finds
-- its original. order_key holds the order field's value as received;
-- SQLite's lower() folds ASCII only, as the rule does.
UPDATE callbacks
   SET dedup_key = lower(order_key) || char(10) || dedup_key
 WHERE provider IN ('funpoint', 'tappay')
   AND dedup_key IS NOT NULL AND instr(dedup_key, char(10)) = 0
   AND length(order_key) BETWEEN 1 AND 64 AND order_key NOT GLOB '*[^A-Za-z0-9_-]*';
