"""The unit of work a handler receives: one open database transaction plus the events it emits.

Handlers change state through `uow.conn` (the service's own SQL) and record what they emit
with `uow.emit(...)`; the runtime writes those events to the outbox in the same transaction,
so state and events commit together or not at all.
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

import psycopg
from psycopg_pool import ConnectionPool

from runtime.clock import Clock
from runtime.outbox import OutboxRow, event_row, write_outbox
from schemas.envelope import CloudEvent, Event, envelope, valid_traceparent


class UnitOfWork:
    def __init__(self, conn: psycopg.Connection, *, source: str, clock: Clock,
                 cause: CloudEvent | None = None, traceparent: str | None = None):
        self.conn = conn
        self.source = source
        self.clock = clock
        self.cause = cause
        self._traceparent = valid_traceparent(traceparent)
        self.emitted: list[OutboxRow] = []

    def now(self) -> datetime:
        return self.clock.now()

    def emit(self, event: Event, *, event_id: str | None = None) -> CloudEvent:
        """Record an event to publish. Pass a deterministic event_id when the event must be
        the same one however often its cause is processed (e.g. one per occurrence)."""
        ce = envelope(event, source=self.source, event_id=event_id, time=self.now())
        self.emitted.append(event_row(ce, self._child_traceparent()))
        return ce

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint that, when it rolls back, also forgets the events emitted inside it (one
        row a worker sets aside must not take the batch's other rows, or emit for itself)."""
        mark = len(self.emitted)
        try:
            with self.conn.transaction():
                yield
        except BaseException:
            del self.emitted[mark:]
            raise

    def _child_traceparent(self) -> str | None:
        # Same trace as the cause, a new span id: analysts can follow one order end to end.
        if not self._traceparent:
            return None
        version, trace_id, _parent, flags = self._traceparent.split("-")
        return f"{version}-{trace_id}-{secrets.token_hex(8)}-{flags}"


@contextmanager
def unit_of_work(pool: ConnectionPool, *, source: str, clock: Clock,
                 traceparent: str | None = None) -> Iterator[UnitOfWork]:
    """For work that does not start from a consumed event (HTTP requests, timers)."""
    if traceparent is None:
        traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    with pool.connection() as conn:
        with conn.transaction():
            uow = UnitOfWork(conn, source=source, clock=clock, traceparent=traceparent)
            yield uow
            write_outbox(conn, uow.emitted)
