-- Lookups for the warehouse and support (GET /orders?...): by status and date, by the delivery
-- e-mail a customer gives on the phone (case-insensitive).
CREATE INDEX orders_by_status ON orders (status, placed_at);
CREATE INDEX orders_by_email ON orders (lower(delivery->>'email'), placed_at);
