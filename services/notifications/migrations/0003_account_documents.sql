-- Emails about supplier-account documents (invoices, overdue reminders): one per document and
-- kind, whatever redelivers the event. An invoice carries its PDF.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS document text;
ALTER TABLE notifications ADD CONSTRAINT one_email_per_document UNIQUE (document, kind);
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS about_something;
ALTER TABLE notifications ADD CONSTRAINT about_something
    CHECK (order_id IS NOT NULL OR reminder_id IS NOT NULL OR standing_order_id IS NOT NULL OR document IS NOT NULL);
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS attachment_name text CHECK (length(attachment_name) <= 200);
-- bounded: an invoice of 200 lines is well under 1 MB
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS attachment bytea CHECK (octet_length(attachment) <= 4194304);
