-- Runtime tables every service database has.

-- The inbox: one row per event id this service has handled. The primary key is what makes
-- redelivery harmless: a duplicate insert is skipped and its handler never runs twice.
CREATE TABLE IF NOT EXISTS inbox (
    event_id     text PRIMARY KEY,
    topic        text NOT NULL,
    partition    int  NOT NULL,
    "offset"     bigint NOT NULL,
    outcome      text NOT NULL DEFAULT 'handled',   -- handled | dead_lettered
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- The outbox: events emitted in the same transaction as the state change that caused them.
-- The relay publishes rows in id order and stamps published_at; a crash between publish and
-- stamp republishes the same event id, which downstream inboxes drop.
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL,
    topic         text NOT NULL,
    key           text NOT NULL,
    value         bytea NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL;
-- An event emitted twice by a retried handler is still one row.
CREATE UNIQUE INDEX IF NOT EXISTS outbox_event_topic ON outbox (event_id, topic);
