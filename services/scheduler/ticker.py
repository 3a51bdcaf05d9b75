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
  One transaction emits at most ``per_schedule`` occurrences of one order, and a tick serves
  each due order at most once before going round again, so one order years behind cannot
  starve the others. A tick that hit a bound is followed at once by another; an idle one
  sleeps ``interval_s``. Skipped occurrences are passed over without emission; when the
  last occurrence is emitted the order ends (StandingOrderChanged "ended").
  (Pausing is different: occurrences due while paused are dropped, see standing.py.)

Timers
  Due timers are fired from the same loop, oldest first, one TimerFired per (timer, fire_at)
  whose id is ``deterministic_id("timer", timer_id, fire_at)``; marking the timer fired
  commits with the emission.
"""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC
from typing import Callable

from runtime.db import TRANSIENT_DB_ERRORS
from runtime.errors import TransientError
from runtime.uow import UnitOfWork
from schemas import TimerFired, deterministic_id
from services.scheduler import store
from services.scheduler.handlers import apply_change

log = logging.getLogger(__name__)

UnitOfWorkFactory = Callable[[], AbstractContextManager[UnitOfWork]]
TICK_S = 0.2
PER_SCHEDULE = 12      # occurrences of one order per transaction (a year of monthly orders)
SCHEDULES_PER_TICK = 200
TIMERS_PER_TRANSACTION = 200


def occurrence_event_id(standing_order_id: str, occurrence: int) -> str:
    return deterministic_id(standing_order_id, occurrence)


def timer_event_id(timer_id: str, fire_at) -> str:
    return deterministic_id("timer", timer_id, fire_at.astimezone(UTC).isoformat())


def emit_due_occurrences(uow: UnitOfWork, served: list[str], per_schedule: int = PER_SCHEDULE) -> tuple[str, int] | None:
    """Lock the most overdue order not in ``served``, emit up to ``per_schedule`` of its due
    occurrences and advance it, all inside ``uow``'s transaction.

    Returns (standing_order_id, occurrences emitted), or None when nothing is due."""
    now = uow.now()
    order = store.lock_next_due(uow.conn, now, served)
    if order is None:
        return None
    due = order.due(now, per_schedule)
    for n, due_at in due:
        event_id = occurrence_event_id(order.standing_order_id, n)
        uow.emit(order.occurrence_due(n, due_at), event_id=event_id)
        store.record_occurrence(uow.conn, order.standing_order_id, n, due_at, now, event_id)
    # Even with nothing due (a stale next_due_at) the schedule is recomputed, so it never sticks.
    advanced = order.scheduled_after(due[-1][0] if due else order.last_occurrence)
    apply_change(uow, advanced, "ended" if advanced.status == "ended" else None, "scheduler")
    return order.standing_order_id, len(due)


def fire_due_timers(uow: UnitOfWork, limit: int = TIMERS_PER_TRANSACTION) -> int:
    now = uow.now()
    timers = store.lock_due_timers(uow.conn, now, limit)
    for t in timers:
        uow.emit(TimerFired(timer_id=t["timer_id"], owner=t["owner"], kind=t["kind"], fire_at=t["fire_at"],
                            fired_at=now, payload=t["payload"]),
                 event_id=timer_event_id(t["timer_id"], t["fire_at"]))
    if timers:
        store.mark_fired(uow.conn, [t["timer_id"] for t in timers], now)
    return len(timers)


@dataclass
class TickResult:
    occurrences: int = 0
    timers: int = 0
    more: bool = False  # a bound was hit: there may be more due right now


def tick(unit_of_work: UnitOfWorkFactory, *, per_schedule: int = PER_SCHEDULE,
         schedules: int = SCHEDULES_PER_TICK, timers: int = TIMERS_PER_TRANSACTION) -> TickResult:
    """One pass: each due order served once (one transaction each), then one batch of timers."""
    result = TickResult()
    served: list[str] = []
    while len(served) < schedules:
        with unit_of_work() as uow:
            done = emit_due_occurrences(uow, served, per_schedule)
        if done is None:
            break
        served.append(done[0])
        result.occurrences += done[1]
        result.more = result.more or done[1] >= per_schedule
    result.more = result.more or len(served) >= schedules
    with unit_of_work() as uow:
        result.timers = fire_due_timers(uow, timers)
    result.more = result.more or result.timers >= timers
    return result


def make_worker(interval_s: float = TICK_S, **bounds) -> Callable:
    def ticker(ctx) -> None:
        delay = interval_s
        while not ctx.stopping.is_set():
            try:
                result = tick(ctx.unit_of_work, **bounds)
                delay = interval_s
                if result.more:
                    continue
            except (*TRANSIENT_DB_ERRORS, TransientError) as exc:
                # The transaction rolled back: nothing was emitted, the same work is due again.
                log.warning("scheduler ticker: transient fault, retrying in %.1fs: %s", delay, exc)
                delay = min(delay * 2, 5.0)
            ctx.stopping.wait(delay)
    ticker.__name__ = "ticker"
    return ticker


worker = make_worker()
