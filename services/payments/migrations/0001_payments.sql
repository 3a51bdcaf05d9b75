-- Payments: one decision per order, supplier accounts on credit, and their double-entry ledger.

-- One row per order, claimed BEFORE any money moves: the primary key is what makes a second
-- event for the same order (an upstream system republishing it with a new event id, a second
-- replica handling it at the same moment) find the order taken and do nothing.
CREATE TABLE payment (
    order_id          text PRIMARY KEY,
    customer_id       text NOT NULL,
    method            text NOT NULL CHECK (method IN ('card', 'account')),
    status            text NOT NULL CHECK (status IN ('claimed', 'verified', 'declined')),
    charged_amount    numeric(14,2),
    currency          char(3),
    charge_reference  text,
    reason_code       text,
    message           text,
    claimed_by_event  text NOT NULL,
    claimed_at        timestamptz NOT NULL,
    decided_at        timestamptz,
    CHECK (status <> 'verified' OR (charged_amount > 0 AND charge_reference IS NOT NULL)),
    CHECK (status <> 'declined' OR reason_code IS NOT NULL)
);

-- A customer's account with us: goods on credit up to a limit, invoices due after net terms.
CREATE TABLE supplier_account (
    customer_id         text PRIMARY KEY,
    credit_limit        numeric(14,2) NOT NULL CHECK (credit_limit >= 0),
    open_balance        numeric(14,2) NOT NULL DEFAULT 0 CHECK (open_balance >= 0),
    currency            char(3) NOT NULL,
    payment_terms_days  int NOT NULL CHECK (payment_terms_days BETWEEN 0 AND 365),
    status              text NOT NULL CHECK (status IN ('active', 'suspended')),
    opened_at           timestamptz NOT NULL,
    changed_at          timestamptz NOT NULL,
    changed_by          text NOT NULL
);

-- Double entry: every journal (one booking) has debits equal to credits.
CREATE TABLE ledger_entry (
    entry_id     bigserial PRIMARY KEY,
    journal_id   text NOT NULL,
    account      text NOT NULL,
    side         text NOT NULL CHECK (side IN ('debit', 'credit')),
    amount       numeric(14,2) NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    customer_id  text NOT NULL,
    order_id     text NOT NULL,
    booked_at    timestamptz NOT NULL,
    due_on       date,
    UNIQUE (journal_id, account, side)
);
CREATE INDEX ledger_entry_by_account ON ledger_entry (account, entry_id DESC);
