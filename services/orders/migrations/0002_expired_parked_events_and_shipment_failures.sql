-- Parked events wait a bounded time (Settings.parked_event_expiry_s) for the order they need.
-- The wait is measured in database time from when the row was parked (existing rows start their
-- wait now, so a deploy does not expire a backlog at once); parked_at stays the business time.
ALTER TABLE parked_events ADD COLUMN IF NOT EXISTS waiting_since timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS parked_events_waiting ON parked_events (waiting_since);

-- What waited too long, moved out of parked_events (so a late OrderPlaced never applies it) and
-- kept for operators with what it was waiting for.
CREATE TABLE IF NOT EXISTS expired_parked_events (
    event_id       text PRIMARY KEY,
    order_id       text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    parked_at      timestamptz NOT NULL,
    waiting_since  timestamptz NOT NULL,
    reason         text NOT NULL,
    expired_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS expired_parked_events_at ON expired_parked_events (expired_at DESC);

-- Confirmed orders the simulated distribution centre could not ship (the shipment failed for
-- good): it skips them from then on. The order stays confirmed; deleting the row retries it.
CREATE TABLE IF NOT EXISTS simulated_shipment_failures (
    order_id   text PRIMARY KEY,
    centre     text NOT NULL,
    reason     text NOT NULL,
    failed_at  timestamptz NOT NULL
);
