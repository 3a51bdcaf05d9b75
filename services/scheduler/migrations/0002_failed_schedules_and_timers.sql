-- A standing order or timer whose processing fails for good (a stored recurrence that raises, a
-- payload that cannot make its event) is set aside instead of being taken first on every tick,
-- which stopped every other schedule behind it. The row keeps everything it had: once the data
-- is repaired an operator can set status back to 'active' / 'pending' and the ticker takes it up.
ALTER TABLE standing_orders DROP CONSTRAINT IF EXISTS standing_orders_status_check;
ALTER TABLE standing_orders ADD CONSTRAINT standing_orders_status_check
    CHECK (status IN ('active', 'paused', 'cancelled', 'ended', 'failed'));
ALTER TABLE standing_orders ADD COLUMN IF NOT EXISTS failed_reason text;
ALTER TABLE standing_orders ADD COLUMN IF NOT EXISTS failed_at timestamptz;
CREATE INDEX IF NOT EXISTS standing_orders_failed ON standing_orders (failed_at DESC) WHERE status = 'failed';

ALTER TABLE timers DROP CONSTRAINT IF EXISTS timers_status_check;
ALTER TABLE timers ADD CONSTRAINT timers_status_check
    CHECK (status IN ('pending', 'fired', 'cancelled', 'failed'));
ALTER TABLE timers ADD COLUMN IF NOT EXISTS failed_reason text;
ALTER TABLE timers ADD COLUMN IF NOT EXISTS failed_at timestamptz;
CREATE INDEX IF NOT EXISTS timers_failed ON timers (failed_at DESC) WHERE status = 'failed';
