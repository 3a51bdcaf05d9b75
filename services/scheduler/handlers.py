"""What the scheduler does with the events it consumes: standing-order requests and timers."""
from __future__ import annotations

from datetime import datetime, timedelta

from runtime.errors import Rejected
from runtime.uow import UnitOfWork
from schemas import StandingOrderRequested, TimerCancelled, TimerRequested
from services.scheduler import store
from services.scheduler.commands import create_standing_order
from services.scheduler.standing import StandingOrder


def on_standing_order_requested(event: StandingOrderRequested, uow: UnitOfWork) -> None:
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
    create_standing_order(uow, order, by=event.customer_id)


def _cause_time(uow: UnitOfWork) -> datetime:
    """When the requesting service decided: orders a request against a cancel that overtook it."""
    return uow.cause.time if uow.cause is not None else uow.now()


def _check_owner(uow: UnitOfWork, timer_id: str, owner: str) -> None:
    known = store.timer_owner(uow.conn, timer_id)
    if known is not None and known != owner:
        raise Rejected(f"timer {timer_id} belongs to {known}, not {owner}")


def on_timer_requested(event: TimerRequested, uow: UnitOfWork) -> None:
    _check_owner(uow, event.timer_id, event.owner)
    store.request_timer(uow.conn, timer_id=event.timer_id, owner=event.owner, kind=event.kind,
                        fire_at=event.fire_at, payload=event.payload, changed_at=_cause_time(uow))


def on_timer_cancelled(event: TimerCancelled, uow: UnitOfWork) -> None:
    _check_owner(uow, event.timer_id, event.owner)
    store.cancel_timer(uow.conn, timer_id=event.timer_id, owner=event.owner, changed_at=_cause_time(uow))


HANDLERS = {
    "StandingOrderRequested": on_standing_order_requested,
    "TimerRequested": on_timer_requested,
    "TimerCancelled": on_timer_cancelled,
}
