-- Parked events move to the runtime's one parking table (runtime/migrations/0004_parking.sql,
-- runtime/parking.py): subject = the order, slot = the event id. Rows keep their business time
-- (parked_at) and their wait so far (waiting_since).
INSERT INTO parked (subject, slot, event_type, payload, waiting_for, parked_at, waiting_since)
SELECT p.order_id, p.event_id, p.event_type, p.payload,
       CASE WHEN o.order_id IS NULL THEN 'the order''s OrderPlaced'
            ELSE 'the order to be able to take it' END,
       p.parked_at, p.waiting_since
FROM parked_events p LEFT JOIN orders o ON o.order_id = p.order_id
ORDER BY p.seq
ON CONFLICT (subject, slot) DO NOTHING;

INSERT INTO parked_expired (seq, subject, slot, event_type, payload, waiting_for, parked_at, waiting_since,
                            reason, expired_at)
SELECT nextval('parked_seq_seq'), order_id, event_id, event_type, payload, 'the order', parked_at,
       waiting_since, reason, expired_at
FROM expired_parked_events;

DROP TABLE parked_events;
DROP TABLE expired_parked_events;
