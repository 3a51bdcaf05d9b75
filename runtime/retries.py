"""The retry worker: parked records retried with backoff, one key at a time, in order.

A record whose handler failed for now (a card gateway timing out, a lock, a deadlock) is parked
in `retry_records` by the batch instead of holding up its partition, and every later record of
the same key waits behind it (state 'waiting'), so a key's events keep their order while other
keys flow. This worker takes the head of each key when it is due:

- success: the record's effects and events commit, the row is deleted, the next record of the
  key becomes the head and is due at once;
- it fails for now again: attempts + 1, the next try after a doubling backoff (1 s … 5 min);
- it keeps failing for longer than the retry window (default a day), or fails permanently:
  it is dead-lettered with the reason (kept as state 'dead_lettered', listed by
  `salesbus set-aside`) and the key moves on.

Two replicas are safe: the head is locked with SKIP LOCKED, and a per-key advisory lock keeps
one replica from taking a key's next record while another still works on its head.

The same worker does the runtime's housekeeping: inbox rows older than the inbox retention
(longer than any redelivery window) are pruned in bounded batches.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from runtime import metrics
from runtime.batch import BatchProcessor, record_from_row
from runtime.containment import SET_ASIDE, Fault, reason_of
from runtime.dead_letters import dead_letter_row
from runtime.outbox import write_outbox
from runtime.record import Decoded, decode

log = logging.getLogger(__name__)
RETRY_LOCK_SPACE = 4244


@dataclass(frozen=True)
class RetryPolicy:
    first_s: float = 1.0
    cap_s: float = 300.0
    #: how long a record may keep failing for now before it is dead-lettered
    window_s: float = 86400.0
    #: inbox rows older than this are pruned (a redelivery older than this is handled again)
    inbox_retention_s: float = 30 * 86400.0
    prune_every_s: float = 600.0
    prune_batch: int = 10_000

    def delay_s(self, attempts: int) -> float:
        return min(self.cap_s, self.first_s * 2 ** min(max(attempts - 1, 0), 30))


class RetryWorker:
    """`step()` handles one due head (True) or finds none (False); run it under guarded_loop."""

    def __init__(self, processor: BatchProcessor, pool: ConnectionPool, policy: RetryPolicy = RetryPolicy()):
        self.processor, self.pool, self.policy = processor, pool, policy
        self.service = processor.service
        self._last_gauge = self._last_prune = 0.0

    def step(self) -> bool:
        self._housekeeping()
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                """SELECT r.*, EXTRACT(EPOCH FROM now() - r.first_failed_at) AS failing_s
                   FROM retry_records r
                   WHERE r.state IN ('retrying', 'waiting') AND r.next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM retry_records e
                                     WHERE e.group_key = r.group_key AND e.seq < r.seq
                                       AND e.state IN ('retrying', 'waiting'))
                   ORDER BY r.next_attempt_at, r.seq LIMIT 1
                   FOR UPDATE SKIP LOCKED""").fetchone()
            if row is None:
                return False
            got = conn.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS got",
                               (RETRY_LOCK_SPACE, row["group_key"])).fetchone()
            if not got["got"]:
                return False  # another replica works on this key right now
            d = decode(record_from_row(row))
            d.source, d.event_id = row["source"], row["event_id"]  # the identity it was parked under
            fault, exc = self.processor.handle_parked(conn, d)
            if fault is None:
                conn.execute("DELETE FROM retry_records WHERE seq = %s", (row["seq"],))
                self._outcome(conn, d, "handled")
                metrics.HANDLED.labels(self.service, d.record.topic).inc()
                metrics.RETRIED.labels(self.service, d.record.topic, "handled").inc()
                log.info("%s: parked %s %s handled after %d attempts", self.service, d.record.topic,
                         d.event_id, row["attempts"] + 1)
                return True
            attempts = row["attempts"] + 1
            if fault is Fault.ITEM and float(row["failing_s"]) < self.policy.window_s:
                delay = self.policy.delay_s(attempts)
                conn.execute(
                    """UPDATE retry_records SET state = 'retrying', attempts = %s, last_error = %s,
                           next_attempt_at = now() + make_interval(secs => %s)
                       WHERE seq = %s""", (attempts, reason_of(exc), delay, row["seq"]))
                metrics.RETRIED.labels(self.service, d.record.topic, "again").inc()
                return True
            reason = reason_of(exc) if fault is not Fault.ITEM else (
                f"gave up after {attempts} attempts over {float(row['failing_s']):.0f}s: {reason_of(exc)}")
            self._give_up(conn, d, row, attempts, reason, exc)
            return True

    def _give_up(self, conn, d: Decoded, row, attempts: int, reason: str, exc: Exception) -> None:
        conn.execute(
            """UPDATE retry_records SET state = 'dead_lettered', attempts = %s, last_error = %s, resolved_at = now()
               WHERE seq = %s""", (attempts, reason, row["seq"]))
        write_outbox(conn, [dead_letter_row(d.record, _Reason(reason, type(exc).__name__), self.processor.group,
                                            d.event_id)])
        self._outcome(conn, d, "dead_lettered")
        metrics.DEAD_LETTERED.labels(self.service, d.record.topic, type(exc).__name__).inc()
        SET_ASIDE.labels(self.service, "retry", type(exc).__name__).inc()
        log.error("%s: parked %s %s dead-lettered: %s", self.service, d.record.topic, d.event_id, reason)

    @staticmethod
    def _outcome(conn, d: Decoded, outcome: str) -> None:
        conn.execute("UPDATE inbox SET outcome = %s WHERE source = %s AND event_id = %s",
                     (outcome, d.source, d.event_id))

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_gauge >= 5.0:
            self._last_gauge = now
            with self.pool.connection() as conn:
                for r in conn.execute(
                        """SELECT state, count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(first_failed_at)), 0)
                           AS oldest FROM retry_records GROUP BY state""").fetchall():
                    metrics.RETRY_RECORDS.labels(self.service, r["state"]).set(r["n"])
                    if r["state"] == "retrying":
                        metrics.RETRY_OLDEST.labels(self.service).set(float(r["oldest"]))
        if now - self._last_prune >= self.policy.prune_every_s:
            self._last_prune = now
            self.prune()

    def prune(self) -> int:
        """Delete inbox rows (and resolved retry rows) older than the retention, in bounded batches."""
        total = 0
        with self.pool.connection() as conn:
            while True:
                n = conn.execute(
                    """DELETE FROM inbox WHERE ctid IN (
                           SELECT ctid FROM inbox
                           WHERE received_at < now() - make_interval(secs => %s) AND outcome <> 'parked'
                           LIMIT %s)""", (self.policy.inbox_retention_s, self.policy.prune_batch)).rowcount
                conn.execute(
                    """DELETE FROM retry_records WHERE state = 'dead_lettered'
                         AND resolved_at < now() - make_interval(secs => %s)""", (self.policy.inbox_retention_s,))
                conn.commit()
                total += n
                if n < self.policy.prune_batch:
                    break
        if total:
            metrics.INBOX_PRUNED.labels(self.service).inc(total)
            log.info("%s: pruned %d inbox rows older than %.0fs", self.service, total, self.policy.inbox_retention_s)
        return total


class _Reason(Exception):
    """A dead-letter reason carrying the class of the exception that caused it."""

    def __init__(self, message: str, cls: str):
        super().__init__(message)
        self.cls = cls
