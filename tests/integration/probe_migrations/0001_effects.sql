-- Counts how many times each event had an effect: the runtime's promises say exactly 1.
CREATE TABLE effects (
    aggregate_id text NOT NULL,
    topic        text NOT NULL,
    times        int  NOT NULL,
    PRIMARY KEY (aggregate_id, topic)
);
