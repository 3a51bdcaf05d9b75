-- Parked shipments move to the runtime's one parking table (runtime/migrations/0004_parking.sql,
-- runtime/parking.py): subject = the order, slot = the tracking number.
INSERT INTO parked (subject, slot, event_type, payload, waiting_for, parked_at, waiting_since)
SELECT order_id, tracking_number, 'OrderShipped', payload,
       'the order''s OrderPlaced (the shipment names no customer)', parked_at, waiting_since
FROM parked_shipments
ORDER BY parked_at
ON CONFLICT (subject, slot) DO NOTHING;

INSERT INTO parked_expired (seq, subject, slot, event_type, payload, waiting_for, parked_at, waiting_since,
                            reason, expired_at)
SELECT nextval('parked_seq_seq'), order_id, tracking_number, 'OrderShipped', payload,
       'the order''s OrderPlaced (the shipment names no customer)', parked_at, waiting_since, reason, expired_at
FROM expired_parked_shipments;

DROP TABLE parked_shipments;
DROP TABLE expired_parked_shipments;
