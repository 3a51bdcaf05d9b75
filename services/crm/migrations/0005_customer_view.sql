-- The customer view (GET /customers/{id}): a customer's orders, standing orders and account from
-- one place, kept from the events the CRM consumes (it reads no other service's tables).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS standing_order_id text;

-- Each standing order as its latest StandingOrderChanged left it (kept for every customer: a
-- standing order may come before the profile).
CREATE TABLE IF NOT EXISTS standing_orders (
    standing_order_id text PRIMARY KEY,
    customer_id       text NOT NULL,
    status            text NOT NULL,
    interval_every    int  NOT NULL,
    interval_unit     text NOT NULL,
    start_date        date NOT NULL,
    time_zone         text NOT NULL,
    end_date          date,
    lines             jsonb NOT NULL,
    changed_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS standing_orders_by_customer ON standing_orders (customer_id, start_date);
