-- The CRM's own tables. Orders, emails and supplier accounts are copies kept from events:
-- the CRM never reads another service's database.

CREATE TABLE salespeople (
    salesperson_id text PRIMARY KEY,
    email          text NOT NULL,
    time_zone      text NOT NULL DEFAULT 'UTC',   -- "due today" is their day, not UTC's
    language       text NOT NULL DEFAULT 'en',    -- of their reminder emails
    updated_at     timestamptz NOT NULL
);

-- A customer is an organisation; its id is the one orders, standing orders and payments use.
CREATE TABLE customers (
    customer_id    text PRIMARY KEY,
    name           text NOT NULL,
    segment        text NOT NULL,
    language       text NOT NULL,
    time_zone      text NOT NULL,
    salesperson_id text NOT NULL REFERENCES salespeople,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE key_contacts (
    customer_id text NOT NULL REFERENCES customers ON DELETE CASCADE,
    position    int  NOT NULL,
    name        text NOT NULL,
    role        text NOT NULL DEFAULT '',
    email       text,
    phone       text,
    is_primary  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (customer_id, position)
);
CREATE UNIQUE INDEX key_contacts_one_primary ON key_contacts (customer_id) WHERE is_primary;

-- The latest terms of the customer's supplier account, as payments announced them.
CREATE TABLE supplier_accounts (
    customer_id        text PRIMARY KEY,
    status             text NOT NULL,
    credit_limit       numeric(14,2) NOT NULL,
    open_balance       numeric(14,2) NOT NULL,
    currency           text NOT NULL,
    payment_terms_days int NOT NULL,
    changed_at         timestamptz NOT NULL
);

-- One timeline per customer: contact log entries, our emails, order milestones.
-- entry_id is the idempotency key: a contact's entry id, "notification:<id>", "order:<id>:<milestone>".
CREATE TABLE timeline (
    entry_id       text PRIMARY KEY,
    customer_id    text NOT NULL REFERENCES customers,
    kind           text NOT NULL CHECK (kind IN ('contact', 'email', 'order')),
    subtype        text NOT NULL,        -- channel, email kind or order milestone
    occurred_at    timestamptz NOT NULL,
    summary        text NOT NULL DEFAULT '',
    contact_name   text,
    salesperson_id text,
    source         text NOT NULL,
    order_id       text,
    detail         jsonb NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX timeline_by_customer ON timeline (customer_id, occurred_at DESC, entry_id DESC);

-- Orders as they were placed: the ordering cadence is computed from these.
CREATE TABLE orders (
    order_id            text PRIMARY KEY,
    customer_id         text NOT NULL,
    placed_at           timestamptz NOT NULL,
    channel             text NOT NULL,
    total               numeric(14,2) NOT NULL,
    currency            text NOT NULL,
    confirmation_number text,
    cancelled_at        timestamptz
);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at);

-- A shipment that names no customer and arrived before its order: applied when the order arrives.
CREATE TABLE parked_shipments (
    order_id        text NOT NULL,
    tracking_number text NOT NULL,
    payload         jsonb NOT NULL,
    parked_at       timestamptz NOT NULL,
    PRIMARY KEY (order_id, tracking_number)
);

CREATE TABLE tasks (
    task_id        text PRIMARY KEY,
    customer_id    text NOT NULL REFERENCES customers,
    salesperson_id text NOT NULL REFERENCES salespeople,
    kind           text NOT NULL CHECK (kind IN ('reorder_call', 'order_follow_up', 'custom')),
    title          text NOT NULL,
    notes          text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    due_at         timestamptz NOT NULL,
    cause_key      text UNIQUE,          -- automatic tasks: created once per cause
    revision       int NOT NULL DEFAULT 1,
    reminder_id    text NOT NULL,        -- the current reminder; older ones never fire
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    closed_at      timestamptz
);
CREATE INDEX tasks_open_by_salesperson ON tasks (salesperson_id, due_at) WHERE status = 'open';
CREATE INDEX tasks_by_customer ON tasks (customer_id, due_at);

CREATE TABLE reminders (
    reminder_id text PRIMARY KEY,
    task_id     text NOT NULL REFERENCES tasks,
    fire_at     timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'sent', 'withdrawn')),
    settled_at  timestamptz
);
