-- One parking mechanism for every service (runtime/parking.py). Topics are not ordered relative
-- to each other, so an event can be consumed before the one it needs (a shipment before its
-- OrderPlaced): it waits here, under what it waits on (`subject`, an order id) and a `slot` that
-- makes a repeat harmless (orders: the event id; notifications: the email kind; crm: the
-- tracking number). Orders, notifications and crm each had a table of their own; their
-- migrations move those rows here.
CREATE TABLE IF NOT EXISTS parked (
    seq            bigserial PRIMARY KEY,               -- parking order: released oldest first
    subject        text NOT NULL,
    slot           text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    waiting_for    text NOT NULL,                       -- said in the reason should it expire
    parked_at      timestamptz NOT NULL,                -- business time (the demo moves it)
    -- the bound (Settings.parked_event_expiry_s) is measured in database time from here
    waiting_since  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subject, slot)
);
CREATE INDEX IF NOT EXISTS parked_waiting ON parked (waiting_since);

-- What waited too long: moved out of `parked` (so a late event never releases it) and kept for
-- operators with its reason (`salesbus set-aside`, GET /ops/set-aside).
CREATE TABLE IF NOT EXISTS parked_expired (
    seq            bigint PRIMARY KEY,
    subject        text NOT NULL,
    slot           text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    waiting_for    text NOT NULL,
    parked_at      timestamptz NOT NULL,
    waiting_since  timestamptz NOT NULL,
    reason         text NOT NULL,
    expired_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS parked_expired_at ON parked_expired (expired_at DESC);
