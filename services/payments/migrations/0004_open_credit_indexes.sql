-- The account's totals and its unapplied credits are read on every invoice; these partial indexes
-- keep that read to the credits still open (most accounts have none), not every payment ever made.
-- invoice_open (0002) already does the same for open invoices.
CREATE INDEX IF NOT EXISTS payment_received_unapplied ON payment_received (customer_id) WHERE unapplied > 0;
CREATE INDEX IF NOT EXISTS credit_note_unapplied ON credit_note (customer_id) WHERE unapplied > 0;
