-- Standing orders: the customer's terms plus where the schedule stands.
-- Occurrence n is always computed from the anchor (start_date, interval) by recurrence.py;
-- last_occurrence/next_occurrence/next_due_at only record progress through that sequence.
CREATE TABLE standing_orders (
    standing_order_id text PRIMARY KEY,
    customer_id       text NOT NULL,
    lines             jsonb NOT NULL,            -- [{sku, quantity}], applies to future occurrences
    delivery          jsonb NOT NULL,
    payment           jsonb NOT NULL,
    language          text NOT NULL DEFAULT 'en',
    every             int  NOT NULL CHECK (every >= 1),
    unit              text NOT NULL CHECK (unit IN ('days', 'weeks', 'months')),
    start_date        date NOT NULL,
    time_zone         text NOT NULL,             -- IANA zone of the customer
    local_time        time NOT NULL DEFAULT '08:00',
    end_date          date,                      -- inclusive; NULL = until further notice
    max_occurrences   int CHECK (max_occurrences >= 1),
    skip_occurrences  int[] NOT NULL DEFAULT '{}',
    status            text NOT NULL CHECK (status IN ('active', 'paused', 'cancelled', 'ended')),
    -- highest occurrence number the schedule has moved past (emitted, skipped or dropped while paused)
    last_occurrence   int  NOT NULL DEFAULT 0,
    next_occurrence   int,
    next_due_at       timestamptz,
    version           int  NOT NULL DEFAULT 1,   -- bumped on every change; names the change event
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX standing_orders_due ON standing_orders (next_due_at) WHERE status = 'active';
CREATE INDEX standing_orders_customer ON standing_orders (customer_id);

-- Every emitted occurrence, once: the primary key makes a second emission fail loudly
-- instead of placing the same order twice.
CREATE TABLE occurrences (
    standing_order_id text NOT NULL REFERENCES standing_orders,
    occurrence        int  NOT NULL,
    due_at            timestamptz NOT NULL,
    emitted_at        timestamptz NOT NULL,
    event_id          text NOT NULL,
    PRIMARY KEY (standing_order_id, occurrence)
);

-- Time triggers other services ask for (the CRM's reminders).
-- changed_at is the cause's event time: TimerRequested and TimerCancelled travel on different
-- topics, so a cancel may be consumed before its request and must still win.
CREATE TABLE timers (
    timer_id   text PRIMARY KEY,
    owner      text NOT NULL,
    kind       text,                             -- NULL for a cancel that overtook its request
    fire_at    timestamptz,
    payload    jsonb NOT NULL DEFAULT '{}',
    status     text NOT NULL CHECK (status IN ('pending', 'fired', 'cancelled')),
    changed_at timestamptz NOT NULL,
    fired_at   timestamptz
);
CREATE INDEX timers_due ON timers (fire_at) WHERE status = 'pending';
