-- Money for real: invoices, payments received, credit notes, refunds, overdue handling.

-- The account's terms gain their variants, its billing contact and time zone (dates on invoices,
-- statements and ageing are the customer's local dates), what it holds unapplied (overpayments,
-- credit notes beyond their invoice) and whether it is on hold for overdue invoices.
ALTER TABLE supplier_account
    ADD COLUMN terms_kind text NOT NULL DEFAULT 'net' CHECK (terms_kind IN ('net', 'eom', 'eom_net')),
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC' CHECK (length(time_zone) BETWEEN 1 AND 64),
    ADD COLUMN billing_email text CHECK (length(billing_email) <= 254),
    ADD COLUMN language text NOT NULL DEFAULT 'en' CHECK (length(language) <= 8),
    ADD COLUMN unapplied_credit numeric(14,2) NOT NULL DEFAULT 0 CHECK (unapplied_credit >= 0),
    ADD COLUMN on_hold boolean NOT NULL DEFAULT false,
    ADD COLUMN held_at timestamptz,
    -- the next local morning the overdue worker looks at this account (NULL: nothing owed)
    ADD COLUMN next_overdue_check_at timestamptz;
CREATE INDEX supplier_account_overdue_due ON supplier_account (next_overdue_check_at)
    WHERE next_overdue_check_at IS NOT NULL;

-- Payments received and credit notes are not about one order; the document names what was booked.
ALTER TABLE ledger_entry ALTER COLUMN order_id DROP NOT NULL;
ALTER TABLE ledger_entry ADD COLUMN document text CHECK (length(document) <= 200);

-- Gap-free numbering: one counter row per series and year, incremented in the transaction that
-- issues the document, so a rollback takes the number back with it (a sequence would leave a gap).
CREATE TABLE document_counter (
    series       text NOT NULL CHECK (series IN ('INV', 'CN')),
    year         int NOT NULL CHECK (year BETWEEN 2000 AND 9999),
    last_number  int NOT NULL CHECK (last_number >= 0),
    PRIMARY KEY (series, year)
);

CREATE TABLE invoice (
    invoice_number  text PRIMARY KEY,
    year            int NOT NULL,
    seq             int NOT NULL,
    customer_id     text NOT NULL REFERENCES supplier_account (customer_id),
    order_id        text NOT NULL UNIQUE,
    journal_id      text NOT NULL,
    currency        char(3) NOT NULL,
    total           numeric(14,2) NOT NULL CHECK (total > 0),
    tax_total       numeric(14,2) NOT NULL CHECK (tax_total >= 0),
    open_amount     numeric(14,2) NOT NULL CHECK (open_amount >= 0 AND open_amount <= total),
    credited        numeric(14,2) NOT NULL DEFAULT 0 CHECK (credited >= 0 AND credited <= total),
    lines           jsonb NOT NULL,
    issue_date      date NOT NULL,
    due_date        date NOT NULL CHECK (due_date >= issue_date),
    issued_at       timestamptz NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX invoice_open ON invoice (customer_id, issue_date, invoice_number) WHERE open_amount > 0;
CREATE INDEX invoice_by_customer ON invoice (customer_id, issue_date);

CREATE TABLE payment_received (
    payment_id       text PRIMARY KEY,
    payer_reference  text NOT NULL UNIQUE CHECK (length(payer_reference) BETWEEN 1 AND 200),
    customer_id      text NOT NULL REFERENCES supplier_account (customer_id),
    currency         char(3) NOT NULL,
    amount           numeric(14,2) NOT NULL CHECK (amount > 0),
    unapplied        numeric(14,2) NOT NULL CHECK (unapplied >= 0 AND unapplied <= amount),
    received_on      date NOT NULL,
    named_invoices   jsonb NOT NULL DEFAULT '[]',
    note             text CHECK (length(note) <= 500),
    recorded_by      text NOT NULL,
    recorded_at      timestamptz NOT NULL,
    journal_id       text NOT NULL
);
CREATE INDEX payment_received_by_customer ON payment_received (customer_id, received_on);

CREATE TABLE credit_note (
    credit_note_number  text PRIMARY KEY,
    year                int NOT NULL,
    seq                 int NOT NULL,
    customer_id         text NOT NULL REFERENCES supplier_account (customer_id),
    order_id            text NOT NULL UNIQUE,
    invoice_number      text REFERENCES invoice (invoice_number),
    currency            char(3) NOT NULL,
    amount              numeric(14,2) NOT NULL CHECK (amount > 0),
    unapplied           numeric(14,2) NOT NULL CHECK (unapplied >= 0 AND unapplied <= amount),
    reason              text NOT NULL CHECK (length(reason) <= 2000),
    issue_date          date NOT NULL,
    issued_at           timestamptz NOT NULL,
    journal_id          text NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX credit_note_by_customer ON credit_note (customer_id, issue_date);

-- Which payment or credit note paid how much of which invoice.
CREATE TABLE allocation (
    allocation_id   bigserial PRIMARY KEY,
    invoice_number  text NOT NULL REFERENCES invoice (invoice_number),
    source_kind     text NOT NULL CHECK (source_kind IN ('payment', 'credit_note')),
    source_id       text NOT NULL,
    amount          numeric(14,2) NOT NULL CHECK (amount > 0),
    allocated_at    timestamptz NOT NULL
);
CREATE INDEX allocation_by_invoice ON allocation (invoice_number);

-- A cancellation seen for an order (possibly before its payment was decided): the refund follows
-- once the order is charged, and an order cancelled before that is never charged.
CREATE TABLE order_cancellation (
    order_id      text PRIMARY KEY,
    customer_id   text NOT NULL,
    reason        text NOT NULL,
    cancelled_at  timestamptz NOT NULL
);

-- At most one refund per order (the primary key), never more than was charged.
CREATE TABLE refund (
    order_id          text PRIMARY KEY REFERENCES payment (order_id),
    method            text NOT NULL CHECK (method IN ('card', 'account')),
    amount            numeric(14,2) NOT NULL CHECK (amount > 0),
    currency          char(3) NOT NULL,
    refund_reference  text NOT NULL,
    journal_id        text NOT NULL,
    refunded_at       timestamptz NOT NULL
);

-- One reminder per invoice and step, whichever worker or replica gets there first.
CREATE TABLE overdue_reminder (
    invoice_number  text NOT NULL REFERENCES invoice (invoice_number),
    step_days       int NOT NULL CHECK (step_days > 0),
    sent_at         timestamptz NOT NULL,
    PRIMARY KEY (invoice_number, step_days)
);
