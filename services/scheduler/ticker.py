"""The scheduler's worker: emits RecurringOrderDue once per occurrence and fires due timers.

Exactly once
  Each occurrence is emitted in the same transaction that moves its schedule past it: the
  RecurringOrderDue goes to the outbox, the occurrence is recorded and ``last_occurrence``
  advances, all committed together or not at all. A crash at any point either lost the
  whole transaction (the occurrence is still due and is emitted on the next tick) or
  committed it (the schedule is already past it). The event id is
  ``deterministic_id(standing_order_id, occurrence)``, so even a relay republish is one
  event to every consumer.

Replicas
  A ticker locks the schedule it works on with ``FOR UPDATE SKIP LOCKED``: a second ticker
  skips it instead of waiting, and re-reads the committed row if it gets it later. A
  customer's pause/skip/cancel locks the same row (without SKIP), so whichever commits first
  wins and the other sees its result; a paused or cancelled order is never selected.

Catch-up after downtime
  Every missed occurrence is emitted, each once, oldest first: the customer's schedule is a
  promise and orders (prices the day it places them) decides what a late occurrence costs.
  One transaction emits at most ``per_schedule`` occurrences of each order it serves (up to
  ``SCHEDULES_PER_TRANSACTION`` orders, locked and written as one batch), and a tick serves
  each due order at most once before going round again, so one order years behind cannot
  starve the others. A tick that hit a bound is followed at once by another; an idle one
  sleeps ``interval_s``. Skipped occurrences are passed over without emission; when the
  last occurrence is emitted the order ends (StandingOrderChanged "ended").
  (Pausing is different: occurrences due while paused are dropped, see standing.py.)

Timers
  Due timers are fired from the same loop, oldest first, one TimerFired per (timer, fire_at)
  whose id is ``deterministic_id("timer", timer_id, fire_at)``; marking the timer fired
  commits with the emission.

Poison rows
  One schedule or timer whose processing fails for good (a stored recurrence that raises, a
  row that no longer makes a valid event) must not stop the others: it used to be selected
  first on every tick, or to take the process down. A batch's work runs in a savepoint inside
  the transaction that holds its row locks; a permanent failure (runtime.containment.classify)
  rolls back just that work and forgets what it emitted, then each of the batch's orders is
  served alone in a savepoint of its own, and the one that fails again is marked `failed`
  with the reason (status 'failed', failed_reason, failed_at; counted in
  salesbus_set_aside_total, listed by `salesbus set-aside`). A timer the same way. A database
  that is away, a lock or serialization failure is not the row's fault: it propagates, the tick
  rolls back and is retried by the worker's guarded_loop (shown as the "ticker" stall).
"""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Callable

from runtime.containment import SET_ASIDE, Fault, classify, guarded_loop, reason_of
from runtime.uow import UnitOfWork
from schemas import TimerFired, deterministic_id
from services.scheduler import store
from services.scheduler.commands import announce
from services.scheduler.standing import StandingOrder

log = logging.getLogger(__name__)

UnitOfWorkFactory = Callable[[], AbstractContextManager[UnitOfWork]]
TICK_S = 0.2
PER_SCHEDULE = 12      # occurrences of one order per transaction (a year of monthly orders)
SCHEDULES_PER_TICK = 1000   # then one batch of timers: due timers wait at most one tick behind orders
#: due orders served in one transaction, locked by one SELECT and written by one statement per
#: table: a commit per order held the ticker to ~150 orders/s with 10,000 due (bench/scale.py),
#: statements per order to ~320/s; a customer's pause waits for the row's lock at most one such
#: transaction (~90 ms for 200 orders here, at the 2,249/s of bench/scale.py --quick)
SCHEDULES_PER_TRANSACTION = 200
TIMERS_PER_TRANSACTION = 200


def occurrence_event_id(standing_order_id: str, occurrence: int) -> str:
    return deterministic_id(standing_order_id, occurrence)


def timer_event_id(timer_id: str, fire_at) -> str:
    return deterministic_id("timer", timer_id, fire_at.astimezone(UTC).isoformat())




def _set_aside(uow: UnitOfWork, where: str, key: str, exc: Exception, mark: Callable[[str], None]) -> None:
    """Mark one row failed, in a savepoint of the transaction holding its lock."""
    reason = reason_of(exc)
    log.error("scheduler: %s %s fails for good, set aside as failed: %s", where, key, reason, exc_info=exc)
    with uow.conn.transaction():
        mark(reason)
    SET_ASIDE.labels("scheduler", where, type(exc).__name__).inc()


def _permanent(exc: Exception, uow: UnitOfWork) -> bool:
    return classify(exc, uow.conn) is Fault.PERMANENT


def serve_due(uow: UnitOfWork, served: list[str], limit: int = SCHEDULES_PER_TRANSACTION,
              per_schedule: int = PER_SCHEDULE) -> list[tuple[str, int]]:
    """Lock up to ``limit`` of the most overdue orders not in ``served``, emit up to
    ``per_schedule`` due occurrences of each and advance them, all inside ``uow``'s transaction,
    with one statement per table for the whole batch. If the batch fails for good, each order is
    served again alone in its own savepoint, so the one at fault is marked failed (0
    occurrences) and the others go on.

    Returns (standing_order_id, occurrences emitted) per order locked; empty when nothing is due."""
    now = uow.now()
    rows = store.lock_due_rows(uow.conn, now, served, limit)
    if len(rows) > 1:
        try:
            with uow.savepoint():
                return _serve(uow, rows, now, per_schedule)
        except Exception as exc:
            if not _permanent(exc, uow):
                raise
            log.warning("scheduler: a batch of %d due orders failed (%s); serving them one by one",
                        len(rows), reason_of(exc))
    return [_serve_alone(uow, row, now, per_schedule) for row in rows]


def emit_due_occurrences(uow: UnitOfWork, served: list[str], per_schedule: int = PER_SCHEDULE) -> tuple[str, int] | None:
    """serve_due for the single most overdue order: (standing_order_id, emitted) or None."""
    done = serve_due(uow, served, 1, per_schedule)
    return done[0] if done else None


def _serve_alone(uow: UnitOfWork, row: dict, now: datetime, per_schedule: int) -> tuple[str, int]:
    so_id = row["standing_order_id"]
    try:
        with uow.savepoint():
            return _serve(uow, [row], now, per_schedule)[0]
    except Exception as exc:
        if not _permanent(exc, uow):
            raise
        _set_aside(uow, "standing_orders", so_id, exc,
                   lambda reason: store.mark_standing_order_failed(uow.conn, so_id, reason, now))
        return so_id, 0


def _serve(uow: UnitOfWork, rows: list[dict], now: datetime, per_schedule: int) -> list[tuple[str, int]]:
    """Emit and advance the locked ``rows``: two statements whatever their number, the events
    going to the outbox at commit (a statement per occurrence and per order held the ticker to
    ~320 orders/s, bench/scale.py --quick)."""
    occurrences, advanced, done = [], [], []
    for row in rows:
        order = StandingOrder.from_row(row)
        due = order.due(now, per_schedule)
        for n, due_at in due:
            event_id = occurrence_event_id(order.standing_order_id, n)
            uow.emit(order.occurrence_due(n, due_at), event_id=event_id)
            occurrences.append((order.standing_order_id, n, due_at, event_id))
        # Even with nothing due (a stale next_due_at) the schedule is recomputed, so it never sticks.
        new = replace(order.scheduled_after(due[-1][0] if due else order.last_occurrence), version=order.version + 1)
        if new.status == "ended":
            announce(uow, new, "ended", "scheduler")
        advanced.append(new)
        done.append((order.standing_order_id, len(due)))
    store.record_occurrences(uow.conn, occurrences, now)
    store.advance(uow.conn, advanced, now)
    return done


def fire_due_timers(uow: UnitOfWork, limit: int = TIMERS_PER_TRANSACTION) -> int:
    """Fire up to ``limit`` due timers; one that cannot make its TimerFired is marked failed.
    Returns how many due timers were taken (fired or set aside)."""
    now = uow.now()
    timers = store.lock_due_timers(uow.conn, now, limit)
    fired = []
    for t in timers:
        mark = len(uow.emitted)
        try:   # no SQL until mark_fired: forgetting the emission is all a failure needs to undo
            uow.emit(TimerFired(timer_id=t["timer_id"], owner=t["owner"], kind=t["kind"], fire_at=t["fire_at"],
                                fired_at=now, payload=t["payload"]),
                     event_id=timer_event_id(t["timer_id"], t["fire_at"]))
        except Exception as exc:
            del uow.emitted[mark:]
            if not _permanent(exc, uow):
                raise
            _set_aside(uow, "timers", t["timer_id"], exc,
                       lambda reason, tid=t["timer_id"]: store.mark_timer_failed(uow.conn, tid, reason, now))
            continue
        fired.append(t["timer_id"])
    if fired:
        store.mark_fired(uow.conn, fired, now)
    return len(timers)


@dataclass
class TickResult:
    occurrences: int = 0
    timers: int = 0
    more: bool = False  # a bound was hit: there may be more due right now


def tick(unit_of_work: UnitOfWorkFactory, *, per_schedule: int = PER_SCHEDULE,
         schedules: int = SCHEDULES_PER_TICK, timers: int = TIMERS_PER_TRANSACTION,
         per_transaction: int = SCHEDULES_PER_TRANSACTION) -> TickResult:
    """One pass: each due order served once (up to `per_transaction` in one transaction, each in
    its own savepoint), then one batch of timers."""
    result = TickResult()
    served: list[str] = []
    while len(served) < schedules:
        asked = min(per_transaction, schedules - len(served))
        with unit_of_work() as uow:
            done = serve_due(uow, served, asked, per_schedule)
        served.extend(so_id for so_id, _ in done)
        result.occurrences += sum(n for _, n in done)
        result.more = result.more or any(n >= per_schedule for _, n in done)
        if len(done) < asked:
            break   # drained: fewer due than asked for
    result.more = result.more or len(served) >= schedules
    with unit_of_work() as uow:
        result.timers = fire_due_timers(uow, timers)
    result.more = result.more or result.timers >= timers
    return result


def make_worker(interval_s: float = TICK_S, **bounds) -> Callable:
    def ticker(ctx) -> None:
        # A tick that raises rolled back: nothing was emitted, the same work is due again. The
        # guard retries it with backoff (a stall in /readyz) and never lets it end the process.
        guarded_loop("scheduler", "ticker", lambda: tick(ctx.unit_of_work, **bounds).more, ctx.stopping,
                     stalls=getattr(ctx, "stalls", None), idle_s=interval_s)
    ticker.__name__ = "ticker"
    return ticker


worker = make_worker()
