"""What the scheduler does with the events it consumes: standing-order requests and timers."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from runtime.errors import Rejected
from runtime.uow import UnitOfWork
from schemas import StandingOrderRequested, TimerCancelled, TimerRequested, deterministic_id
from services.scheduler import store
from services.scheduler.standing import StandingOrder


def create_standing_order(uow: UnitOfWork, order: StandingOrder, changed_by: str) -> bool:
    """Store a new order and announce it; False (and nothing emitted) if it already exists."""
    if not store.insert_standing_order(uow.conn, order, uow.now()):
        return False
    announce(uow, order, "created", changed_by)
    return True


def announce(uow: UnitOfWork, order: StandingOrder, change: str, changed_by: str) -> None:
    # One event per version: re-running the same change cannot announce it twice.
    uow.emit(order.changed(change, changed_by, uow.now()),
             event_id=deterministic_id("StandingOrderChanged", order.standing_order_id, order.version))


def apply_change(uow: UnitOfWork, order: StandingOrder, change: str | None, changed_by: str) -> StandingOrder:
    """Save the new state (the caller holds the row lock) and announce it when it is a change."""
    saved = replace(order, version=order.version + 1)
    store.save(uow.conn, saved, uow.now())
    if change is not None:
        announce(uow, saved, change, changed_by)
    return saved


def handle_standing_order_requested(event: StandingOrderRequested, uow: UnitOfWork) -> None:
    # The cart checked the start date against the customer's today; a day's slack covers
    # a cart that used the UTC date for a customer ahead of UTC.
    try:
        order = StandingOrder.new(
            standing_order_id=event.standing_order_id, customer_id=event.customer_id, lines=event.lines,
            delivery=event.delivery, payment=event.payment, language=event.language, interval=event.interval,
            start_date=event.start_date, time_zone=event.time_zone, end_date=event.end_date,
            max_occurrences=event.max_occurrences)
    except ValueError as exc:
        raise Rejected(f"standing order {event.standing_order_id}: {exc}") from exc
    if event.start_date < order.local_today(event.requested_at) - timedelta(days=1):
        raise Rejected(f"standing order {event.standing_order_id} starts {event.start_date}, "
                       f"before it was requested ({event.requested_at:%Y-%m-%d})")
    create_standing_order(uow, order, changed_by=event.customer_id)


def _cause_time(uow: UnitOfWork) -> datetime:
    """When the requesting service decided: orders a request against a cancel that overtook it."""
    return uow.cause.time if uow.cause is not None else uow.now()


def _check_owner(uow: UnitOfWork, timer_id: str, owner: str) -> None:
    known = store.timer_owner(uow.conn, timer_id)
    if known is not None and known != owner:
        raise Rejected(f"timer {timer_id} belongs to {known}, not {owner}")


def handle_timer_requested(event: TimerRequested, uow: UnitOfWork) -> None:
    _check_owner(uow, event.timer_id, event.owner)
    store.request_timer(uow.conn, timer_id=event.timer_id, owner=event.owner, kind=event.kind,
                        fire_at=event.fire_at, payload=event.payload, changed_at=_cause_time(uow))


def handle_timer_cancelled(event: TimerCancelled, uow: UnitOfWork) -> None:
    _check_owner(uow, event.timer_id, event.owner)
    store.cancel_timer(uow.conn, timer_id=event.timer_id, owner=event.owner, changed_at=_cause_time(uow))
