-- Parked shipments wait a bounded time (Settings.parked_event_expiry_s) for the OrderPlaced
-- that names their customer. The wait is measured in database time from when the row was parked
-- (existing rows start their wait now, so a deploy does not expire a backlog at once).
ALTER TABLE parked_shipments ADD COLUMN IF NOT EXISTS waiting_since timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS parked_shipments_waiting ON parked_shipments (waiting_since);

-- What waited too long, moved out of parked_shipments (so a late OrderPlaced never applies it)
-- and kept for operators with the reason.
CREATE TABLE IF NOT EXISTS expired_parked_shipments (
    order_id         text NOT NULL,
    tracking_number  text NOT NULL,
    payload          jsonb NOT NULL,
    parked_at        timestamptz NOT NULL,
    waiting_since    timestamptz NOT NULL,
    reason           text NOT NULL,
    expired_at       timestamptz NOT NULL,
    PRIMARY KEY (order_id, tracking_number, expired_at)
);
CREATE INDEX IF NOT EXISTS expired_parked_shipments_at ON expired_parked_shipments (expired_at DESC);
