-- Containment: inbox identity is CloudEvents' (source, id); records set aside to retry; outbox
-- rows the broker can never take.

-- Two upstream systems may both send "ev-1": only (source, id) is unique (CloudEvents 1.0).
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
-- how many times the record was taken up: 1, plus one per explicit re-drive of its dead letter
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS attempts int NOT NULL DEFAULT 1;
ALTER TABLE inbox DROP CONSTRAINT IF EXISTS inbox_pkey;
ALTER TABLE inbox ADD CONSTRAINT inbox_pkey PRIMARY KEY (source, event_id);
CREATE INDEX IF NOT EXISTS inbox_event_id ON inbox (event_id);
-- pruning walks the oldest rows first
CREATE INDEX IF NOT EXISTS inbox_received_at ON inbox (received_at);

-- A record whose handler failed for now (gateway timeout, lock, deadlock) waits here with
-- backoff instead of holding up its partition; later records of the same key wait behind it
-- (state 'waiting') so one key's order is kept. The retry worker takes the head of each key.
CREATE TABLE IF NOT EXISTS retry_records (
    seq              bigserial PRIMARY KEY,
    source           text NOT NULL,
    event_id         text NOT NULL,
    group_key        text NOT NULL,               -- the Kafka key (sanitised): the unit of ordering
    topic            text NOT NULL,
    partition        int NOT NULL,
    "offset"         bigint NOT NULL,
    record_key       bytea,
    value            bytea,
    headers          jsonb NOT NULL DEFAULT '[]', -- [[name, value-or-null], ...] sanitised
    state            text NOT NULL CHECK (state IN ('retrying', 'waiting', 'dead_lettered')),
    attempts         int NOT NULL DEFAULT 0,
    last_error       text,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS retry_records_active ON retry_records (group_key, seq)
    WHERE state IN ('retrying', 'waiting');
CREATE INDEX IF NOT EXISTS retry_records_due ON retry_records (next_attempt_at)
    WHERE state IN ('retrying', 'waiting');

-- A row the broker refuses for good (too large, invalid) is set aside, not retried forever.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failed_at timestamptz;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS failure text;
DROP INDEX IF EXISTS outbox_pending;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL AND failed_at IS NULL;
