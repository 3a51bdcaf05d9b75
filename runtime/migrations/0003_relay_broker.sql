-- The broker this service's relay last published to, by its cluster id. A relay that finds
-- another one (a cluster rebuilt, an in-memory broker restarted: every topic empty) publishes
-- again what the outbox still retains (published rows are kept 24 h); inboxes absorb the repeats.
CREATE TABLE IF NOT EXISTS relay_broker (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id  text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
