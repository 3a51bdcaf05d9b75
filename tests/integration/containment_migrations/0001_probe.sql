-- What the containment probe did, in order, and the switches a test flips while it runs.
CREATE TABLE handled (
    seq          bigserial PRIMARY KEY,
    aggregate_id text NOT NULL,
    event_id     text NOT NULL,
    customer_id  text NOT NULL
);
-- a row per customer id whose events fail: 'transient' (TransientError), 'disconnect' (the
-- handler's own connection is terminated: an environment fault), 'limit' (a program-limit error)
CREATE TABLE failing (customer_id text PRIMARY KEY, how text NOT NULL);
CREATE TABLE wide (v text PRIMARY KEY);
