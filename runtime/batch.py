"""One batch of records in one transaction: inbox, handlers, outbox. Pure of Kafka.

Three tiers, each only when the one before could not finish:

1. Fast path: every handler in one pipelined transaction, no savepoints (a savepoint per event
   doubled the round trips).
2. Careful path: the batch again, one savepoint per event, so the failing event alone is set
   aside — dead-lettered if it can never succeed, parked in `retry_records` if it fails for
   now (gateway timeout, lock, deadlock) — and the others commit.
3. Isolation: anything the careful path could not contain (a failure outside one handler) is
   redone one record per transaction; a record that still fails is dead-lettered on its own
   with nothing but its bytes and a storable reason.

Only an environment fault (database unreachable, shutting down) leaves this module: the caller
retries the same batch, never skips it.
"""
from __future__ import annotations

import json
import logging
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from psycopg_pool import ConnectionPool

from runtime import metrics
from runtime.clock import Clock
from runtime.containment import SET_ASIDE, Fault, classify, reason_of, storable
from runtime.dead_letters import dead_letter_row
from runtime.errors import Rejected
from runtime.outbox import OutboxRow, write_outbox
from runtime.record import Decoded, Record, decode
from runtime.uow import UnitOfWork
from schemas.envelope import InvalidRecord

log = logging.getLogger(__name__)
Handler = Callable[..., None]


@dataclass
class BatchResult:
    handled: list[str] = field(default_factory=list)            # topics
    duplicates: list[str] = field(default_factory=list)         # topics
    skipped: list[str] = field(default_factory=list)            # re-drives meant for another group
    dead_lettered: list[tuple[str, str]] = field(default_factory=list)  # (topic, reason class)
    parked: list[tuple[Decoded, str, str]] = field(default_factory=list)  # (record, state, reason)
    outbox: list[OutboxRow] = field(default_factory=list)
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)   # identity -> inbox outcome

    def merge(self, other: "BatchResult") -> None:
        for name in ("handled", "duplicates", "skipped", "dead_lettered", "parked", "outbox"):
            getattr(self, name).extend(getattr(other, name))
        self.outcomes.update(other.outcomes)


class _RetryCarefully(Exception):
    """A handler failed on the fast path: redo the batch with a savepoint per event."""


class BatchProcessor:
    def __init__(self, service: str, handlers: dict[str, Handler], pool: ConnectionPool, clock: Clock,
                 *, group: str | None = None):
        self.service, self.handlers, self.pool, self.clock = service, handlers, pool, clock
        self.group = group or service

    # -- the three tiers ---------------------------------------------------------------------

    def process(self, records: list[Record]) -> BatchResult:
        decoded = [decode(r) for r in records]
        try:
            return self._run(decoded, careful=False)
        except _RetryCarefully:
            pass
        except Exception as exc:
            if classify(exc) is Fault.ENVIRONMENT:
                raise
        try:
            return self._run(decoded, careful=True)
        except Exception as exc:
            if classify(exc) is Fault.ENVIRONMENT:
                raise
            log.error("%s: batch of %d failed outside one handler; redoing it one record at a time:\n%s",
                      self.service, len(decoded), traceback.format_exc())
        result = BatchResult()
        for d in decoded:
            try:
                result.merge(self._run([d], careful=True))
            except Exception as exc:
                if classify(exc) is Fault.ENVIRONMENT:
                    raise  # the records committed so far are in the inbox: the retry skips them
                result.merge(self._dead_letter_alone(d, exc))
        return result

    def _run(self, decoded: list[Decoded], careful: bool) -> BatchResult:
        result = BatchResult()
        with self.pool.connection() as conn, conn.transaction():
            mine = [d for d in decoded if not self._for_another_group(d, result)]
            fresh = self._record_in_inbox(conn, mine)
            held = self._held_keys(conn, [d for d in mine if d.identity in fresh])
            try:
                with nullcontext() if careful else conn.pipeline():
                    for d in mine:
                        self._one(conn, d, fresh, held, result, careful)
                    write_outbox(conn, result.outbox)
                    self._write_parked(conn, result.parked)
                    self._write_outcomes(conn, result.outcomes)
            except _RetryCarefully:
                raise
            except Exception as exc:
                if careful or classify(exc, conn) is Fault.ENVIRONMENT:
                    raise
                # A statement error surfaced at a pipeline sync, not inside one handler call.
                raise _RetryCarefully() from exc
        self._count(result)
        return result

    # -- one record --------------------------------------------------------------------------

    def _for_another_group(self, d: Decoded, result: BatchResult) -> bool:
        if d.redrive_group is not None and d.redrive_group != self.group:
            result.skipped.append(d.record.topic)
            return True
        return False

    def _one(self, conn, d: Decoded, fresh: dict, held: set[str], result: BatchResult, careful: bool) -> None:
        if d.identity not in fresh:
            result.duplicates.append(d.record.topic)
            return
        attempt = fresh.pop(d.identity)  # a repeat later in the same batch is a duplicate too
        if d.error is not None:
            self._dead_letter(d, d.error, result, attempt)
        elif d.group_key in held:
            # an earlier record of this key is parked: keep the key's order, wait behind it
            result.parked.append((d, "waiting", "waiting behind an earlier record of the same key"))
            result.outcomes[d.identity] = "parked"
        else:
            fault, exc = self._handle(conn, d, result, careful)
            if fault is None:
                result.handled.append(d.record.topic)
            elif fault is Fault.ITEM:
                held.add(d.group_key)
                result.parked.append((d, "retrying", reason_of(exc)))
                result.outcomes[d.identity] = "parked"
            else:
                self._dead_letter(d, exc, result, attempt)

    def _handle(self, conn, d: Decoded, result: BatchResult, careful: bool):
        """Run the handler: (None, None) on success, else (fault, exception)."""
        handler = self.handlers.get(d.record.topic)
        if handler is None:
            return Fault.PERMANENT, InvalidRecord(f"{self.service} has no handler for {d.record.topic}")
        uow = UnitOfWork(conn, source=self.service, clock=self.clock, cause=d.envelope, traceparent=d.traceparent)
        try:
            if careful:
                with conn.transaction():
                    handler(d.event, uow)
            else:
                handler(d.event, uow)
        except Exception as exc:
            fault = classify(exc, conn)
            if fault is Fault.ENVIRONMENT:
                raise
            if not careful:
                raise _RetryCarefully() from exc
            if isinstance(exc, Rejected):
                log.info("%s rejected %s %s: %s", self.service, d.record.topic, d.event_id, exc)
            elif fault is Fault.ITEM:
                log.warning("%s: %s %s fails for now, parked to retry: %s", self.service, d.record.topic,
                            d.event_id, reason_of(exc, 300))
            else:  # a bug or bad data: dead-lettered loudly, never silently dropped
                log.error("%s handler for %s failed on %s:\n%s", self.service, d.record.topic, d.event_id,
                          storable(traceback.format_exc(), 4000))
            return fault, exc
        result.outbox.extend(uow.emitted)
        return None, None

    def handle_parked(self, conn, d: Decoded):
        """The retry worker's call: one parked record, in the caller's transaction, with a
        savepoint. Returns (None, None) on success (its events are in the outbox) or (fault, exc)."""
        if d.error is not None:
            return Fault.PERMANENT, d.error
        result = BatchResult()
        fault, exc = self._handle(conn, d, result, careful=True)
        if fault is None:
            write_outbox(conn, result.outbox)
        return fault, exc

    def _dead_letter(self, d: Decoded, reason: Exception, result: BatchResult, attempt: int = 1) -> None:
        result.dead_lettered.append((d.record.topic, type(reason).__name__))
        result.outbox.append(dead_letter_row(d.record, reason, self.group, d.event_id, attempt))
        result.outcomes[d.identity] = "dead_lettered"

    def _dead_letter_alone(self, d: Decoded, exc: Exception) -> BatchResult:
        """Last line: the record failed even in a transaction of its own. Keyed by its position
        (its id may be what fails), it goes to the DLQ with its bytes and the reason."""
        result = BatchResult()
        reason = InvalidRecord(f"could not be handled even alone: {reason_of(exc)}")
        alone = Decoded(d.record, "record", d.record.position, error=reason)
        with self.pool.connection() as conn, conn.transaction():
            fresh = self._record_in_inbox(conn, [alone])
            if alone.identity in fresh:
                self._dead_letter(alone, reason, result, fresh[alone.identity])
                write_outbox(conn, result.outbox)
                self._write_outcomes(conn, result.outcomes)
            else:
                result.duplicates.append(d.record.topic)
        self._count(result)
        return result

    # -- set-based statements ----------------------------------------------------------------

    def _record_in_inbox(self, conn, decoded: list[Decoded]) -> dict[tuple[str, str], int]:
        """Insert the batch's identities; returns those new to this service (identity -> attempt).

        A re-drive meant for this group takes up again a record the inbox holds as dead-lettered
        (its attempt count goes up); any other repeat is a duplicate."""
        unique: dict[tuple[str, str], Decoded] = {}
        for d in decoded:
            unique.setdefault(d.identity, d)   # one row per identity: ON CONFLICT may touch a row once
        decoded = list(unique.values())
        if not decoded:
            return {}
        rows = conn.execute(
            """INSERT INTO inbox AS i (source, event_id, topic, partition, "offset", outcome)
               SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::int[], %b::bigint[], %b::text[])
               ON CONFLICT (source, event_id) DO UPDATE SET attempts = i.attempts + 1, outcome = 'redriven',
                   received_at = now()
               WHERE i.outcome = 'dead_lettered' AND EXCLUDED.outcome = 'redriven'
               RETURNING source, event_id, attempts""",
            ([d.source for d in decoded], [d.event_id for d in decoded], [d.record.topic for d in decoded],
             [d.record.partition for d in decoded], [d.record.offset for d in decoded],
             ["redriven" if d.redrive_group == self.group else "handled" for d in decoded]),
        ).fetchall()
        return {(r["source"], r["event_id"]): r["attempts"] for r in rows}

    def _held_keys(self, conn, decoded: list[Decoded]) -> set[str]:
        """Keys with a record parked in retry_records: their later records wait behind it."""
        keys = list({d.group_key for d in decoded if d.error is None})
        if not keys:
            return set()
        rows = conn.execute(
            """SELECT DISTINCT group_key FROM retry_records
               WHERE group_key = ANY(%s) AND state IN ('retrying', 'waiting')""", (keys,)).fetchall()
        return {r["group_key"] for r in rows}

    @staticmethod
    def _write_parked(conn, parked: list[tuple[Decoded, str, str]]) -> None:
        if not parked:
            return
        conn.execute(
            """INSERT INTO retry_records (source, event_id, group_key, topic, partition, "offset", record_key,
                                          value, headers, state, attempts, last_error)
               SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::bigint[],
                                    %b::bytea[], %b::bytea[], %b::jsonb[], %b::text[], %b::int[], %b::text[])
               ON CONFLICT (source, event_id) DO NOTHING""",
            ([d.source for d, _, _ in parked], [d.event_id for d, _, _ in parked],
             [d.group_key for d, _, _ in parked], [d.record.topic for d, _, _ in parked],
             [d.record.partition for d, _, _ in parked], [d.record.offset for d, _, _ in parked],
             [d.record.key for d, _, _ in parked], [d.record.value for d, _, _ in parked],
             [json.dumps(stored_headers(d.record)) for d, _, _ in parked],
             [state for _, state, _ in parked], [1 if state == "retrying" else 0 for _, state, _ in parked],
             [reason for _, _, reason in parked]))

    @staticmethod
    def _write_outcomes(conn, outcomes: dict[tuple[str, str], str]) -> None:
        if not outcomes:
            return
        items = list(outcomes.items())
        conn.execute(
            """UPDATE inbox SET outcome = u.outcome
               FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(source, event_id, outcome)
               WHERE inbox.source = u.source AND inbox.event_id = u.event_id""",
            ([s for (s, _), _ in items], [e for (_, e), _ in items], [o for _, o in items]))

    def _count(self, result: BatchResult) -> None:
        # Counted only once the transaction committed: a rolled-back fast path counts nothing.
        for topic in result.duplicates:
            metrics.DUPLICATES.labels(self.service, topic).inc()
        for topic in result.skipped:
            metrics.SKIPPED.labels(self.service, topic).inc()
        for topic, reason in result.dead_lettered:
            metrics.DEAD_LETTERED.labels(self.service, topic, reason).inc()
            SET_ASIDE.labels(self.service, "dlq", reason).inc()
        for d, state, _ in result.parked:
            metrics.PARKED.labels(self.service, d.record.topic, state).inc()
        for topic in result.handled:
            metrics.HANDLED.labels(self.service, topic).inc()


def stored_headers(record: Record) -> list[list[str | None]]:
    """Headers as jsonb can hold them (a parked record is rebuilt from these)."""
    return [[storable(k, 200), None if v is None else storable(v, 4096)] for k, v in record.headers[:64]]


def record_from_row(row: dict) -> Record:
    headers = row["headers"] if isinstance(row["headers"], list) else json.loads(row["headers"])
    return Record(row["topic"], row["partition"], row["offset"],
                  bytes(row["record_key"]) if row["record_key"] is not None else None,
                  bytes(row["value"]) if row["value"] is not None else None,
                  tuple((k, v.encode() if v is not None else None) for k, v in headers))
