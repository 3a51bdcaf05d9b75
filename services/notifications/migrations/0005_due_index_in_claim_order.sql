-- The sender claims its batch with ORDER BY next_attempt_at, queued_at LIMIT n FOR UPDATE SKIP
-- LOCKED. On (next_attempt_at) alone the planner read and sorted every pending row for each claim
-- (FOR UPDATE puts the row locking between the limit and the sort): 5.4 ms a claim with 6,000
-- emails waiting, growing with the backlog — in a 6,000-order burst it was the notifications
-- database's costliest statement (pg_stat_statements: 1.2 ms mean over 1,474 claims). In the
-- claim's own order the first unlocked rows end the scan: 0.07 ms with 6,000 waiting.
CREATE INDEX notifications_due_in_order ON notifications (next_attempt_at, queued_at) WHERE status = 'pending';
DROP INDEX notifications_due;
