"""The order lifecycle's handlers: OrderPlaced, PaymentVerified, PaymentDeclined, OrderShipped.

PaymentVerified, PaymentDeclined and OrderShipped travel on other topics than OrderPlaced, so
they can be consumed before the order they refer to: such an event is parked (parked_events)
and applied, in arrival order, when the order can take it. A shipment reported before the
payment is confirmed waits the same way.

Steps that contradict the order's state (shipping a cancelled order, a payment verified after
it was declined) are refused: consumed events are dead-lettered with the reason (Rejected); a
parked event that turns out refused is recorded as such in the order's timeline and logged.

A declined payment only moves the order to `declined`: the PaymentDeclined itself is what
tells the customer (notifications), so we emit no OrderCancelled for it.
"""
from __future__ import annotations

import logging
from datetime import datetime

from runtime.errors import Rejected
from runtime.uow import UnitOfWork
from schemas import (REGISTRY, Delivery, Money, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced,
                     OrderShipped, PaymentDeclined, PaymentVerified, deterministic_id, new_event_id)
from services.orders import store
from services.orders.confirmation import new_confirmation_number
from services.orders.lifecycle import Decision, Step, decide

log = logging.getLogger(__name__)


def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    conn, now = uow.conn, uow.now()
    if not store.insert_order(conn, event, now):
        store.add_timeline(conn, event.order_id, "OrderPlaced", "ignored", now,
                           {"reason": "the order is already recorded (published again upstream)"})
        return
    store.add_timeline(conn, event.order_id, "OrderPlaced", "applied", now,
                       {"channel": event.channel, "total": str(event.total), "lines": len(event.lines),
                        "placed_at": event.placed_at})
    apply_parked(uow, event.order_id)


def on_payment_verified(event: PaymentVerified, uow: UnitOfWork) -> None:
    _take(event, uow)


def on_payment_declined(event: PaymentDeclined, uow: UnitOfWork) -> None:
    _take(event, uow)


def on_order_shipped(event: OrderShipped, uow: UnitOfWork) -> None:
    _take(event, uow)


def _take(event: PaymentVerified | PaymentDeclined | OrderShipped, uow: UnitOfWork) -> None:
    """Apply a consumed event to its order now, or park it until the order can take it."""
    order = store.get_order(uow.conn, event.order_id, lock=True)
    if order is None:
        _park(event, uow, "the order is not known yet: its OrderPlaced has not arrived")
        return
    decision = _apply_event(event, uow, order)
    if decision.verdict == "refuse":
        raise Rejected(f"{event.event_type()} for order {event.order_id} refused: {decision.reason}")
    if decision.verdict == "wait":
        _park(event, uow, decision.reason)
    elif decision.verdict == "apply":
        apply_parked(uow, event.order_id)


def _park(event, uow: UnitOfWork, reason: str) -> None:
    event_id = uow.cause.id if uow.cause is not None else new_event_id()
    now = uow.now()
    store.park(uow.conn, event_id, event.order_id, event.event_type(), event.model_dump(mode="json"), now)
    store.add_timeline(uow.conn, event.order_id, event.event_type(), "parked", now, {"reason": reason})


def apply_parked(uow: UnitOfWork, order_id: str) -> None:
    """Apply what waited for this order, oldest first, until nothing more can move it."""
    while True:
        order = store.get_order(uow.conn, order_id, lock=True)
        for row in store.parked_for(uow.conn, order_id):
            event = REGISTRY[row["event_type"]].model_validate(row["payload"])
            decision = _apply_event(event, uow, order)
            if decision.verdict == "wait":
                continue
            store.unpark(uow.conn, row["event_id"])
            if decision.verdict == "refuse":
                log.warning("parked %s %s for order %s refused: %s", row["event_type"], row["event_id"],
                            order_id, decision.reason)
                store.add_timeline(uow.conn, order_id, row["event_type"], "refused", uow.now(),
                                   {"reason": decision.reason, "event_id": row["event_id"]})
            if decision.verdict == "apply":
                break  # the order moved: look at what is still parked with its new state
        else:
            return


def _apply_event(event, uow: UnitOfWork, order: dict) -> Decision:
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
    now = uow.now()
    store.mark_payment_verified(uow.conn, order["order_id"], event.charge_reference, now)
    store.add_timeline(uow.conn, order["order_id"], "PaymentVerified", "applied", now,
                       {**details, "verified_at": event.verified_at})
    _confirm(uow, order["order_id"])
    return decision


def _confirm(uow: UnitOfWork, order_id: str) -> None:
    """A verified order is confirmed at once: a confirmation number and an OrderConfirmed."""
    conn, now = uow.conn, uow.now()
    number = new_confirmation_number()
    while not store.mark_confirmed(conn, order_id, number, now):
        number = new_confirmation_number()  # taken by another order (about 1 in 10^12)
    order = store.get_order(conn, order_id)
    uow.emit(OrderConfirmed(
        order_id=order_id, customer_id=order["customer_id"], confirmation_number=number,
        lines=to_order_lines(store.order_lines(conn, order_id)),
        total=Money(amount=order["total_amount"], currency=order["currency"]),
        delivery=Delivery.model_validate(order["delivery"]), language=order["language"], confirmed_at=now,
        standing_order_id=order["standing_order_id"], occurrence=order["occurrence"],
        priced_note=order["priced_note"],
    ), event_id=deterministic_id("OrderConfirmed", order_id))
    store.add_timeline(conn, order_id, "OrderConfirmed", "applied", now, {"confirmation_number": number})


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
