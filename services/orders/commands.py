"""The order lifecycle's steps, shared by the event handlers (handlers.py), the HTTP API (api.py)
and the simulated distribution centres (distribution_centre.py).

The steps (verify_payment, confirm, decline, ship, cancel) return the lifecycle's Decision:
the handlers park, ignore or dead-letter by it. The commands on top of them (record_shipment,
cancel_order) are what a person asks for; they raise domain errors (runtime/problems.py) that
every API answers as problem+json, never HTTPException.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, ContextManager

from runtime import parking
from runtime.access import owned_or_404
from runtime.auth import Principal
from runtime.problems import Conflict, NotFound
from runtime.uow import UnitOfWork
from schemas import (Delivery, Money, OrderCancelled, OrderConfirmed, OrderLine, OrderShipped,
                     PaymentDeclined, PaymentVerified, deterministic_id)
from services.orders import store
from services.orders.confirmation import new_confirmation_number
from services.orders.lifecycle import Decision, Step, decide

log = logging.getLogger(__name__)


class CannotShip(Conflict):
    slug = "order-cannot-ship"


class AlreadyShipped(Conflict):
    """Shipped already, with another parcel than the one reported now."""
    slug = "order-already-shipped"


class CannotCancel(Conflict):
    slug = "order-cannot-be-cancelled"


# --- commands: what a person asks for ---------------------------------------------------------


def record_shipment(unit_of_work: Callable[[], ContextManager[UnitOfWork]], order_id: str, carrier: str,
                    tracking_number: str, distribution_centre: str, *, reported_by: str) -> tuple[dict, bool]:
    """Ship the order and announce it (OrderShipped), in one transaction of its own. Returns the
    order after it and whether it changed (False: the same parcel reported again).
    NotFound, CannotShip, AlreadyShipped. A report of another parcel for a shipped order is kept
    in the order's timeline (committed) before AlreadyShipped is raised."""
    with unit_of_work() as uow:
        order = store.get_order(uow.conn, order_id, lock=True)
        if order is None:
            raise NotFound(f"no order {order_id}")
        decision = ship(uow, order, carrier, tracking_number, distribution_centre, uow.now(),
                        reported_by=reported_by, announce=True)
        if decision.verdict in ("refuse", "wait"):
            raise CannotShip(f"order {order_id} cannot ship: {decision.reason}")
        after = store.get_order(uow.conn, order_id)
    if decision.verdict == "ignore" and (order["carrier"], order["tracking_number"]) != (carrier, tracking_number):
        raise AlreadyShipped(f"order {order_id} already shipped with {order['carrier']} {order['tracking_number']}")
    return after, decision.verdict == "apply"


def cancel_order(uow: UnitOfWork, order_id: str, reason: str, principal: Principal) -> dict:
    """Cancel an order that has not shipped (OrderCancelled); again: nothing changes.
    NotFound (also for another customer's order), CannotCancel."""
    order = store.get_order(uow.conn, order_id, lock=True)
    owned_or_404(order, order and order["customer_id"], principal, f"order {order_id}")
    decision = cancel(uow, order, reason, f"{principal.role} {principal.subject}")
    if decision.verdict == "refuse":
        raise CannotCancel(f"order {order_id} cannot be cancelled: {decision.reason}")
    return store.get_order(uow.conn, order_id)


# --- the lifecycle's steps --------------------------------------------------------------------


#: why an event waits for an order we have not seen
NOT_KNOWN = "the order is not known yet: its OrderPlaced has not arrived"


def waiting_for(reason: str) -> str:
    """What a parked event waits for, as its expiry's reason says it."""
    return "the order's OrderPlaced" if reason == NOT_KNOWN else f"the order to be able to take it ({reason})"


def apply_parked(uow: UnitOfWork, order_id: str) -> None:
    """Apply what waited for this order, oldest first, until nothing more can move it."""
    while True:
        # What is parked first: most orders have nothing waiting, and then the order is not read
        # again (every caller already holds the order's row lock, so the lock order is unchanged).
        waiting = parking.waiting(uow.conn, order_id)
        if not waiting:
            return
        order = store.get_order(uow.conn, order_id, lock=True)
        for parked in waiting:
            event, event_id = parked.event, parked.slot
            decision = apply_event(event, uow, order)
            if decision.verdict == "wait":
                parking.park(uow.conn, subject=order_id, slot=event_id, event=event,
                             waiting_for=waiting_for(decision.reason), now=uow.now())
                continue
            parking.unpark(uow.conn, order_id, event_id)
            if decision.verdict == "refuse":
                log.warning("parked %s %s for order %s refused: %s", event.event_type(), event_id,
                            order_id, decision.reason)
                store.add_timeline(uow.conn, order_id, event.event_type(), "refused", uow.now(),
                                   {"reason": decision.reason, "event_id": event_id})
            if decision.verdict == "apply":
                break  # the order moved: look at what is still parked with its new state
        else:
            return


def apply_event(event, uow: UnitOfWork, order: dict) -> Decision:
    if isinstance(event, PaymentVerified):
        return verify_payment(uow, order, event)
    if isinstance(event, PaymentDeclined):
        return decline(uow, order, event)
    if isinstance(event, OrderShipped):
        return ship(uow, order, event.carrier, event.tracking_number, event.distribution_centre,
                    event.shipped_at, reported_by="warehouse system (OrderShipped event)", announce=False)
    raise TypeError(f"no lifecycle step for {type(event).__name__}")


def _ignored(uow: UnitOfWork, order: dict, event_type: str, decision: Decision, **details) -> Decision:
    store.add_timeline(uow.conn, order["order_id"], event_type, "ignored", uow.now(),
                       {"reason": decision.reason, **details})
    return decision


def verify_payment(uow: UnitOfWork, order: dict, event: PaymentVerified) -> Decision:
    decision = decide(order["status"], Step.VERIFY_PAYMENT)
    details = {"method": event.method, "amount": str(event.amount), "charge_reference": event.charge_reference}
    if decision.verdict == "ignore":
        return _ignored(uow, order, "PaymentVerified", decision, **details)
    if decision.verdict != "apply":
        return decision
    # A verified order always confirms (lifecycle: payment_verified --confirm--> confirmed), so
    # the verified state is written by the confirming UPDATE: one row version per PaymentVerified,
    # and the statement that writes it notes both steps on the timeline.
    confirm(uow, {**order, "status": decision.state, "charge_reference": event.charge_reference},
            noted_first=("PaymentVerified", {**details, "verified_at": event.verified_at}))
    return decision


def confirm(uow: UnitOfWork, order: dict, *, noted_first: tuple[str, dict] | None = None) -> Decision:
    """A verified order is confirmed at once: a confirmation number and an OrderConfirmed.
    `order` is the row as this transaction read it under its lock and then changed it: read
    again, it was two more round trips per PaymentVerified. `noted_first`: (event type, details)
    of the step that led here, noted "applied" on the timeline before the confirmation."""
    conn, now, order_id = uow.conn, uow.now(), order["order_id"]
    decision = decide(order["status"], Step.CONFIRM)
    if decision.verdict != "apply":
        if noted_first:
            store.add_timeline(conn, order_id, noted_first[0], "applied", now, noted_first[1])
        return decision
    number = new_confirmation_number()
    # confirmed, noted on the timeline (noted_first, then "OrderConfirmed applied") and its lines
    # read, by one statement
    while (lines := store.mark_confirmed(conn, order_id, number, now, order["charge_reference"],
                                         noted_first=noted_first)) is None:
        number = new_confirmation_number()  # taken by another order (about 1 in 10^12)
    uow.emit(OrderConfirmed(
        order_id=order_id, customer_id=order["customer_id"], confirmation_number=number,
        lines=to_order_lines(lines),
        total=Money(amount=order["total_amount"], currency=order["currency"]),
        delivery=Delivery.model_validate(order["delivery"]), language=order["language"], confirmed_at=now,
        standing_order_id=order["standing_order_id"], occurrence=order["occurrence"],
        priced_note=order["priced_note"],
    ), event_id=deterministic_id("OrderConfirmed", order_id))
    return decision


def decline(uow: UnitOfWork, order: dict, event: PaymentDeclined) -> Decision:
    decision = decide(order["status"], Step.DECLINE)
    details = {"reason_code": event.reason_code, "message": event.message}
    if decision.verdict == "ignore":
        return _ignored(uow, order, "PaymentDeclined", decision, **details)
    if decision.verdict == "apply":
        store.set_status(uow.conn, order["order_id"], decision.state, uow.now())
        store.add_timeline(uow.conn, order["order_id"], "PaymentDeclined", "applied", uow.now(),
                           {**details, "declined_at": event.declined_at})
    return decision


def ship(uow: UnitOfWork, order: dict, carrier: str, tracking_number: str, distribution_centre: str,
         shipped_at: datetime, *, reported_by: str, announce: bool) -> Decision:
    """Record that the order left a distribution centre. `announce` emits OrderShipped: our own
    endpoint and simulator do; a shipment an upstream warehouse published is already on the bus."""
    decision = decide(order["status"], Step.SHIP)
    details = {"carrier": carrier, "tracking_number": tracking_number,
               "distribution_centre": distribution_centre, "reported_by": reported_by}
    if decision.verdict == "ignore":
        if (order["carrier"], order["tracking_number"]) == (carrier, tracking_number):
            return decision  # the same shipment again, e.g. our own OrderShipped coming back: nothing new
        return _ignored(uow, order, "OrderShipped", decision, **details)
    if decision.verdict != "apply":
        return decision
    now = uow.now()
    store.mark_shipped(uow.conn, order["order_id"], carrier, tracking_number, distribution_centre, shipped_at, now)
    store.add_timeline(uow.conn, order["order_id"], "OrderShipped", "applied", now,
                       {**details, "shipped_at": shipped_at})
    if announce:
        uow.emit(OrderShipped(order_id=order["order_id"], customer_id=order["customer_id"], carrier=carrier,
                              tracking_number=tracking_number, distribution_centre=distribution_centre,
                              shipped_at=shipped_at),
                 event_id=deterministic_id("OrderShipped", order["order_id"]))
    return decision


def cancel(uow: UnitOfWork, order: dict, reason: str, cancelled_by: str) -> Decision:
    decision = decide(order["status"], Step.CANCEL)
    if decision.verdict != "apply":
        return decision
    now = uow.now()
    store.set_status(uow.conn, order["order_id"], decision.state, now)
    store.add_timeline(uow.conn, order["order_id"], "OrderCancelled", "applied", now,
                       {"reason": reason, "cancelled_by": cancelled_by})
    uow.emit(OrderCancelled(order_id=order["order_id"], customer_id=order["customer_id"], reason=reason,
                            cancelled_at=now), event_id=deterministic_id("OrderCancelled", order["order_id"]))
    apply_parked(uow, order["order_id"])  # a shipment waiting for this order is now refused
    return decision


def to_order_lines(rows: list[dict]) -> list[OrderLine]:
    return [OrderLine(sku=r["sku"], name=r["name"], quantity=r["quantity"],
                      unit_price=Money(amount=r["unit_price"], currency=r["currency"])) for r in rows]
