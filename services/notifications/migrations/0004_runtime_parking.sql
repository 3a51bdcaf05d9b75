-- Parked events move to the runtime's one parking table (runtime/migrations/0004_parking.sql,
-- runtime/parking.py): subject = the order, slot = the email kind.
INSERT INTO parked (subject, slot, event_type, payload, waiting_for, parked_at, waiting_since)
SELECT p.order_id, p.kind, p.event_type, p.payload,
       CASE WHEN c.order_id IS NULL THEN 'the order''s OrderPlaced'
            ELSE 'the order''s OrderConfirmed (its confirmation number)' END,
       p.parked_at, p.waiting_since
FROM parked_events p LEFT JOIN order_contacts c ON c.order_id = p.order_id
ORDER BY p.parked_at
ON CONFLICT (subject, slot) DO NOTHING;

INSERT INTO parked_expired (seq, subject, slot, event_type, payload, waiting_for, parked_at, waiting_since,
                            reason, expired_at)
SELECT nextval('parked_seq_seq'), order_id, kind, event_type, payload, 'the order', parked_at, waiting_since,
       reason, expired_at
FROM expired_parked_events;

DROP TABLE parked_events;
DROP TABLE expired_parked_events;
