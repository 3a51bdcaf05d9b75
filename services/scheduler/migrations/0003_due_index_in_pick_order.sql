-- The ticker picks the next due order with ORDER BY next_due_at, standing_order_id LIMIT 1 FOR
-- UPDATE SKIP LOCKED, once per order. On (next_due_at) alone the planner scanned and sorted every
-- due row for each pick (10,000 due: 35-42 ms a pick, the sort spilling to disk; the ticker did
-- 18-22 orders/s, bench/scale.py). In the pick's own order, the first unlocked row ends the scan.
CREATE INDEX standing_orders_due_in_order ON standing_orders (next_due_at, standing_order_id) WHERE status = 'active';
DROP INDEX standing_orders_due;
