-- Dedup keys led by their order's number (providers::led_by_order, issue 14):
-- the keys of Funpoint and TapPay callbacks stored before get the same lead
-- by the same rule, so that a resend arriving after the upgrade still finds
-- its original. order_key holds the order field's value as received; the
-- lead folds ASCII only (lower() would follow the database's locale).
UPDATE callbacks
   SET dedup_key = translate(order_key, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
                   || E'\n' || dedup_key
 WHERE provider IN ('funpoint', 'tappay')
   AND dedup_key IS NOT NULL AND strpos(dedup_key, E'\n') = 0
   AND order_key ~ '^[A-Za-z0-9_-]{1,64}$';
