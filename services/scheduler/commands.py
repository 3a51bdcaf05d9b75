"""The standing-order commands shared by the HTTP API (api.py), the StandingOrderRequested
handler (handlers.py) and the ticker (ticker.py).

They raise domain errors (runtime/problems.py: NotFound, Conflict via InvalidChange, Refused),
which every API answers as problem+json; handlers turn them into dead letters (Rejected).

Ids: a standing order is `so-<32 hex digits>`, wherever it is created (the cart's checkout
makes the same shape). One created over HTTP with an Idempotency-Key gets an id derived from
the customer and the key, so a retry finds the order it created instead of making another.
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime
from typing import Callable

from runtime.access import owned_or_404
from runtime.auth import Principal
from runtime.problems import DomainError, Forbidden, Refused
from runtime.uow import UnitOfWork
from schemas import deterministic_id
from services.scheduler import store
from services.scheduler.standing import StandingOrder

Change = Callable[[StandingOrder, datetime], list[tuple[StandingOrder, str]]]


class CustomerRequired(Forbidden):
    """Staff create standing orders for a customer, never for themselves."""
    slug = "customer-required"


def _refused(exc: ValueError) -> DomainError:
    """Terms that make no schedule: Refused, keeping the slug of a refusal that has its own."""
    return exc if isinstance(exc, DomainError) else Refused(str(exc))


def standing_order_id(customer_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return f"so-{uuid.uuid4().hex}"
    return "so-" + deterministic_id("standing-order", customer_id, idempotency_key).replace("-", "")


def changed_by(who: Principal) -> str:
    return who.subject if who.role != "operator" else f"operator:{who.subject}"


def announce(uow: UnitOfWork, order: StandingOrder, change: str, by: str) -> None:
    # One event per version: re-running the same change cannot announce it twice.
    uow.emit(order.changed(change, by, uow.now()),
             event_id=deterministic_id("StandingOrderChanged", order.standing_order_id, order.version))


def create_standing_order(uow: UnitOfWork, order: StandingOrder, by: str) -> bool:
    """Store a new order and announce it; False (and nothing emitted) if it already exists."""
    if not store.insert_standing_order(uow.conn, order, uow.now()):
        return False
    announce(uow, order, "created", by)
    return True


def apply_change(uow: UnitOfWork, order: StandingOrder, change: str | None, by: str) -> StandingOrder:
    """Save the new state (the caller holds the row lock) and announce it when it is a change."""
    saved = replace(order, version=order.version + 1)
    store.save(uow.conn, saved, uow.now())
    if change is not None:
        announce(uow, saved, change, by)
    return saved


def load(conn, so_id: str, who: Principal, *, lock: bool = False) -> StandingOrder:
    """The standing order if `who` may act for its customer; NotFound otherwise (ids are not to be probed)."""
    order = store.get(conn, so_id, lock=lock)
    return owned_or_404(order, order and order.customer_id, who, f"standing order {so_id}")


def request_standing_order(uow: UnitOfWork, who: Principal, terms: dict, idempotency_key: str
                           ) -> tuple[StandingOrder, bool]:
    """A standing order asked for over HTTP: the order and whether it is new (False: the same
    Idempotency-Key again). Refused (bad terms, a start in the past), Forbidden, CustomerRequired."""
    customer_id = terms.pop("customer_id", None) or (who.subject if who.role == "customer" else None)
    if customer_id is None:
        raise CustomerRequired(f"a {who.role} key acts for a customer: name it in customer_id")
    if not who.can_act_for_customer(customer_id):
        raise Forbidden("customers can create standing orders only for themselves")
    so_id = standing_order_id(customer_id, idempotency_key)
    try:
        order = StandingOrder.new(standing_order_id=so_id, customer_id=customer_id, **terms)
    except ValueError as exc:
        raise _refused(exc) from exc
    if order.start_date < order.local_today(uow.now()):
        raise Refused(f"start_date {order.start_date} is in the past for {order.time_zone}")
    if create_standing_order(uow, order, changed_by(who)):
        return order, True
    return load(uow.conn, so_id, who), False


def change(uow: UnitOfWork, so_id: str, who: Principal, what: Change) -> StandingOrder:
    """Apply the customer's change under the row lock, each step its own announced version.
    NotFound, InvalidChange (409), Refused (terms that make no schedule)."""
    order = load(uow.conn, so_id, who, lock=True)
    try:
        changes = what(order, uow.now())
    except ValueError as exc:
        raise _refused(exc) from exc
    for new, kind in changes:
        order = apply_change(uow, replace(new, version=order.version), kind, changed_by(who))
    return order


# --- the changes (each: order, now -> [(new state, change kind)]) ----------------------------

def pause(o: StandingOrder, now: datetime) -> list:
    return [] if o.status == "paused" else [(o.pause(), "paused")]


def resume(o: StandingOrder, now: datetime) -> list:
    return [] if o.status == "active" else [(o.resume(now), "resumed")]


def cancel(o: StandingOrder, now: datetime) -> list:
    return [] if o.status == "cancelled" else [(o.cancel(), "cancelled")]


def skip_next(o: StandingOrder, now: datetime) -> list:
    return [(o.skip_next(now)[0], "skipped")]


def skip_on(day: date) -> Change:
    """Skip the occurrence dated `day`; again: nothing changes (idempotent)."""
    def what(o: StandingOrder, now: datetime) -> list:
        skipped = o.skip(o.occurrence_on(day), now)
        return [] if skipped is o else [(skipped, "skipped")]
    return what


def amend(lines, delivery) -> Change:
    def what(o: StandingOrder, now: datetime) -> list:
        out = []
        if lines is not None and tuple(lines) != o.lines:
            o = o.with_lines(lines)
            out.append((o, "lines_changed"))
        if delivery is not None and delivery != o.delivery:
            o = o.with_delivery(delivery)
            out.append((o, "delivery_changed"))
        return out
    return what
