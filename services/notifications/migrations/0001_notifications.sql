-- What this service knows about an order, learnt from OrderPlaced and OrderConfirmed
-- (never read from the orders service's tables).
CREATE TABLE IF NOT EXISTS order_contacts (
    order_id             text PRIMARY KEY,
    customer_id          text NOT NULL,
    email                text NOT NULL,          -- the delivery email given at checkout
    recipient            text NOT NULL,          -- name for the greeting
    language             text NOT NULL,
    country              text NOT NULL,          -- ISO 3166-1; picks the time zone for dates
    confirmation_number  text,                   -- from OrderConfirmed
    updated_at           timestamptz NOT NULL
);

-- Events that arrived before what they need to be rendered (topics are not ordered relative
-- to each other). Applied, then deleted, when the OrderPlaced / OrderConfirmed arrives.
CREATE TABLE IF NOT EXISTS parked_events (
    order_id    text NOT NULL,
    kind        text NOT NULL,
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    parked_at   timestamptz NOT NULL,
    PRIMARY KEY (order_id, kind)                 -- a duplicate with a new event id parks nothing new
);

-- One row per email, rendered when queued; the sender worker delivers pending rows.
CREATE TABLE IF NOT EXISTS notifications (
    notification_id    text PRIMARY KEY,         -- deterministic from what the email is about
    kind               text NOT NULL,
    order_id           text,
    reminder_id        text,
    standing_order_id  text,
    occurrence         int,
    customer_id        text NOT NULL,
    recipient          text NOT NULL,
    language           text NOT NULL,
    subject            text NOT NULL,
    body_text          text NOT NULL,
    body_html          text NOT NULL,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts           int NOT NULL DEFAULT 0,
    last_error         text,
    -- database time, not the business clock: retry spacing is about the SMTP relay recovering
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    queued_at          timestamptz NOT NULL,
    sent_at            timestamptz,
    CONSTRAINT one_email_per_order_and_kind UNIQUE (order_id, kind),
    CONSTRAINT one_email_per_reminder UNIQUE (reminder_id),
    CONSTRAINT one_email_per_occurrence UNIQUE (standing_order_id, occurrence, kind),
    CONSTRAINT about_something CHECK (order_id IS NOT NULL OR reminder_id IS NOT NULL
                                      OR standing_order_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
