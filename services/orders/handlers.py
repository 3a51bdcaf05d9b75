"""The order lifecycle's handlers: OrderPlaced, PaymentVerified, PaymentDeclined, OrderShipped.

PaymentVerified, PaymentDeclined and OrderShipped travel on other topics than OrderPlaced, so
they can be consumed before the order they refer to: such an event is parked (runtime.parking,
under the order id, one slot per event id) and applied, in arrival order, when the order can take it. A shipment reported before the
payment is confirmed waits the same way.

Steps that contradict the order's state (shipping a cancelled order, a payment verified after
it was declined) are refused: consumed events are dead-lettered with the reason (Rejected); a
parked event that turns out refused is recorded as such in the order's timeline and logged.

A declined payment only moves the order to `declined`: the PaymentDeclined itself is what
tells the customer (notifications), so we emit no OrderCancelled for it.
"""
from __future__ import annotations

from runtime import parking
from runtime.errors import Rejected
from runtime.uow import UnitOfWork
from schemas import OrderPlaced, OrderShipped, PaymentDeclined, PaymentVerified, new_event_id
from services.orders import store
from services.orders.commands import NOT_KNOWN, apply_event, apply_parked, waiting_for
from services.orders.standing_orders import on_product_changed, on_recurring_order_due


def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    conn, now = uow.conn, uow.now()
    if store.insert_order(conn, event, now):   # with its timeline entry, "applied" or "ignored"
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
        # Not known: take the lock its OrderPlaced takes, and look again (a new snapshot) before
        # parking; one being committed by another replica is then seen, or sees what we park.
        store.lock_order(uow.conn, event.order_id)
        order = store.get_order(uow.conn, event.order_id, lock=True)
    if order is None:
        _park(event, uow, NOT_KNOWN)
        return
    decision = apply_event(event, uow, order)
    if decision.verdict == "refuse":
        raise Rejected(f"{event.event_type()} for order {event.order_id} refused: {decision.reason}")
    if decision.verdict == "wait":
        _park(event, uow, decision.reason)
    elif decision.verdict == "apply":
        apply_parked(uow, event.order_id)


def _park(event, uow: UnitOfWork, reason: str) -> None:
    event_id = uow.cause.id if uow.cause is not None else new_event_id()
    now = uow.now()
    parking.park(uow.conn, subject=event.order_id, slot=event_id, event=event, waiting_for=waiting_for(reason),
                 now=now)
    store.add_timeline(uow.conn, event.order_id, event.event_type(), "parked", now, {"reason": reason})


HANDLERS = {
    "OrderPlaced": on_order_placed,
    "PaymentVerified": on_payment_verified,
    "PaymentDeclined": on_payment_declined,
    "OrderShipped": on_order_shipped,
    "ProductChanged": on_product_changed,
    "RecurringOrderDue": on_recurring_order_due,
}
