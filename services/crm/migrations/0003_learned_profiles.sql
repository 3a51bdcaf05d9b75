-- A customer the CRM first hears of through an order gets a profile from that order's delivery
-- details instead of the order being dead-lettered; it is marked so a salesperson completes it
-- (PUT /customers/{id} clears needs_review).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'crm';
ALTER TABLE customers ADD COLUMN IF NOT EXISTS needs_review boolean NOT NULL DEFAULT false;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS first_order_id text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS delivery jsonb;
CREATE INDEX IF NOT EXISTS customers_needing_review ON customers (created_at) WHERE needs_review;
