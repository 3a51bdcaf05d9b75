-- Emails that can never go out reach a terminal state instead of being taken again and again:
-- a message that cannot be built (a recipient the email package reads as a group, a header with
-- a line break), a permanent (5xx) refusal of the recipient or the data, or transient failures
-- for longer than Settings.email_retry_window_s. last_error says why, attempts how many tries.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sent', 'failed'));
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS failed_at timestamptz;
-- Database time of the first failed attempt: the retry window is about the relay recovering,
-- like next_attempt_at, not about the business clock (which the demo and tests move by months).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS first_failed_at timestamptz;
-- `salesbus set-aside` lists the latest failed emails
CREATE INDEX IF NOT EXISTS notifications_failed ON notifications (failed_at DESC) WHERE status = 'failed';

-- Parked events wait a bounded time (Settings.parked_event_expiry_s) for the OrderPlaced /
-- OrderConfirmed they need. The wait is measured in database time from when the row was parked
-- (existing rows start their wait now, so a deploy does not expire a backlog at once).
ALTER TABLE parked_events ADD COLUMN IF NOT EXISTS waiting_since timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS parked_events_waiting ON parked_events (waiting_since);

-- What waited too long, moved out of parked_events (so a late OrderPlaced never renders it) and
-- kept for operators with the reason.
CREATE TABLE IF NOT EXISTS expired_parked_events (
    order_id       text NOT NULL,
    kind           text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    parked_at      timestamptz NOT NULL,
    waiting_since  timestamptz NOT NULL,
    reason         text NOT NULL,
    expired_at     timestamptz NOT NULL,
    PRIMARY KEY (order_id, kind, expired_at)
);
CREATE INDEX IF NOT EXISTS expired_parked_events_at ON expired_parked_events (expired_at DESC);
