-- The orders service's own tables. Money is numeric(14,2) everywhere.

CREATE TABLE orders (
    order_id             text PRIMARY KEY,
    customer_id          text NOT NULL,
    status               text NOT NULL CHECK (status IN ('placed', 'payment_verified', 'confirmed',
                                                         'shipped', 'declined', 'cancelled')),
    channel              text NOT NULL,
    total_amount         numeric(14,2) NOT NULL,
    currency             char(3) NOT NULL,
    delivery             jsonb NOT NULL,
    payment_mode         text NOT NULL,
    language             text NOT NULL,
    placed_at            timestamptz NOT NULL,
    standing_order_id    text,
    occurrence           int,
    priced_note          text,
    -- issued once, when the payment is verified; what the customer quotes on the phone
    confirmation_number  text UNIQUE,
    confirmed_at         timestamptz,
    charge_reference     text,
    carrier              text,
    tracking_number      text,
    distribution_centre  text,
    shipped_at           timestamptz,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at DESC);
-- what the distribution centre picks up next
CREATE INDEX orders_awaiting_shipment ON orders (confirmed_at) WHERE status = 'confirmed';

CREATE TABLE order_lines (
    order_id     text NOT NULL REFERENCES orders ON DELETE CASCADE,
    line_no      int  NOT NULL,
    sku          text NOT NULL,
    name         text NOT NULL,
    quantity     int  NOT NULL,   -- as received: payments declines an order with a quantity <= 0
    unit_price   numeric(14,2) NOT NULL,
    currency     char(3) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- What happened to each order, including what was ignored or parked. No foreign key: an event
-- that arrives before its OrderPlaced is recorded (as parked) before the order exists.
CREATE TABLE order_timeline (
    id          bigserial PRIMARY KEY,
    order_id    text NOT NULL,
    event_type  text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('applied', 'ignored', 'parked', 'refused')),
    at          timestamptz NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX order_timeline_by_order ON order_timeline (order_id, id);

-- Events that arrived before the order could take them (another topic raced ahead of
-- OrderPlaced, or a shipment reported before the payment was confirmed).
CREATE TABLE parked_events (
    event_id    text PRIMARY KEY,
    order_id    text NOT NULL,
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    parked_at   timestamptz NOT NULL,
    seq         bigserial
);
CREATE INDEX parked_events_by_order ON parked_events (order_id, seq);

-- Our copy of the catalog, with history, so a standing-order occurrence is priced as on its date.
CREATE TABLE catalog_prices (
    sku          text NOT NULL,
    changed_at   timestamptz NOT NULL,
    name         text NOT NULL,
    unit_price   numeric(14,2) NOT NULL,
    currency     char(3) NOT NULL,
    active       boolean NOT NULL,
    PRIMARY KEY (sku, changed_at)
);

-- One row per standing-order occurrence we handled: a repeated RecurringOrderDue is a no-op.
CREATE TABLE standing_occurrences (
    standing_order_id  text NOT NULL,
    occurrence         int  NOT NULL,
    order_id           text NOT NULL,
    outcome            text NOT NULL CHECK (outcome IN ('placed', 'failed')),
    reason             text,
    due_at             timestamptz NOT NULL,
    handled_at         timestamptz NOT NULL,
    PRIMARY KEY (standing_order_id, occurrence)
);
