-- The inbox's index on event_id alone: no statement of the runtime or a service reads the inbox by
-- event_id without its source (the primary key (source, event_id) serves every lookup, pruning has
-- inbox_received_at). Every consumed record still paid for it: one more B-tree insert at a random
-- leaf, which at 10 million rows (bench/scale.py: 3.2 GB of table and indexes) no longer stays in
-- memory.
DROP INDEX IF EXISTS inbox_event_id;
