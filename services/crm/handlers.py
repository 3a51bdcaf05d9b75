"""The CRM's event handlers: everything that happened with a customer lands on their timeline,
and some of it makes work for their salesperson (follow-up after a shipment, reorder call).

A customer's first order is normal business: an OrderPlaced for a customer without a profile
creates one from the order's delivery details (`source: first_order`, `needs_review`), owned by
the sales desk (Policy.new_customer_salesperson) until a salesperson completes it. Order
milestones that overtake their OrderPlaced wait for it (parked and retried). Any other event
about a customer the CRM does not know is dead-lettered with the reason, so a typo in an
upstream system's customer id is seen, not lost.
"""
from __future__ import annotations

import logging

from runtime import parking
from runtime.errors import Rejected, TransientError
from runtime.uow import UnitOfWork
from schemas import (ContactLogged, InvoiceOverdue, NotificationSent, OrderCancelled, OrderConfirmed, OrderPlaced,
                     OrderShipped, ReminderDue, StandingOrderChanged, SupplierAccountChanged, TimerFired,
                     deterministic_id)
from services.crm import commands, store, task_store, tasks
from services.crm.tasks import Policy

log = logging.getLogger(__name__)


def known_customer(uow: UnitOfWork, customer_id: str | None, what: str) -> dict:
    row = store.customer(uow.conn, customer_id) if customer_id else None
    if row is None:
        raise Rejected(f"unknown customer {customer_id!r}: the CRM has no profile for it ({what})")
    return row


# --- the contact log and our emails ---------------------------------------------------------


def on_contact_logged(event: ContactLogged, uow: UnitOfWork) -> None:
    """From upstream systems, and our own API's entries coming back: the entry id makes it one entry."""
    known_customer(uow, event.customer_id, f"contact log entry {event.entry_id}")
    existing = store.entry(uow.conn, event.entry_id)
    if existing is not None and existing["customer_id"] != event.customer_id:
        raise Rejected(f"contact log entry {event.entry_id} already belongs to customer {existing['customer_id']}")
    store.add_entry(uow.conn, entry_id=event.entry_id, customer_id=event.customer_id, kind="contact",
                    subtype=event.channel, occurred_at=event.occurred_at, summary=event.summary,
                    contact_name=event.contact_name, salesperson_id=event.salesperson_id, source=event.source,
                    now=uow.now())


def on_notification_sent(event: NotificationSent, uow: UnitOfWork) -> None:
    if event.kind == "reminder":
        return  # an email to our salesperson about a task, not something the customer received
    known_customer(uow, event.customer_id, f"{event.kind} email {event.notification_id}")
    store.add_entry(uow.conn, entry_id=f"notification:{event.notification_id}", customer_id=event.customer_id,
                    kind="email", subtype=event.kind, occurred_at=event.sent_at,
                    summary=f"{event.subject} (to {event.recipient})", source="notifications",
                    order_id=event.order_id, detail={"recipient": event.recipient, "language": event.language},
                    now=uow.now())


def on_supplier_account_changed(event: SupplierAccountChanged, uow: UnitOfWork) -> None:
    # Kept for every customer: accounts are often opened before the CRM profile exists.
    store.upsert_supplier_account(uow.conn, customer_id=event.customer_id, status=event.status,
                                  credit_limit=event.credit_limit, open_balance=event.open_balance,
                                  currency=event.currency, payment_terms_days=event.payment_terms_days,
                                  changed_at=event.changed_at, version=event.version,
                                  available_credit=event.available_credit, on_hold=event.on_hold)


def on_standing_order_changed(event: StandingOrderChanged, uow: UnitOfWork) -> None:
    """For the customer view: kept for every customer, as accounts are."""
    store.upsert_standing_order(uow.conn, standing_order_id=event.standing_order_id, customer_id=event.customer_id,
                                status=event.status, every=event.interval.every, unit=event.interval.unit,
                                start_date=event.start_date, time_zone=event.time_zone, end_date=event.end_date,
                                lines=[line.model_dump(mode="json") for line in event.lines],
                                changed_at=event.changed_at)


# --- order milestones -----------------------------------------------------------------------


def learned_customer(uow: UnitOfWork, event: OrderPlaced, policy: Policy) -> dict:
    """The customer's profile; for a customer the CRM has not heard of, one made from this order."""
    row = store.customer(uow.conn, event.customer_id)
    if row is not None:
        return row
    d = event.delivery
    time_zone = tasks.country_time_zone(d.country)
    store.ensure_salesperson(uow.conn, salesperson_id=policy.new_customer_salesperson,
                             email=policy.new_customer_salesperson_email, time_zone=time_zone,
                             language=event.language, now=uow.now())
    if store.insert_learned_customer(uow.conn, customer_id=event.customer_id,
                                     name=f"{d.recipient}, {d.city} ({d.country})"[:200], language=event.language,
                                     time_zone=time_zone, salesperson_id=policy.new_customer_salesperson,
                                     order_id=event.order_id, delivery=d.model_dump(mode="json"), now=uow.now()):
        store.replace_contacts(uow.conn, event.customer_id, [
            {"name": d.recipient, "role": "from the first order's delivery", "email": d.email, "phone": d.phone,
             "primary": True}])
        log.info("customer %s learned from its first order %s", event.customer_id, event.order_id)
    return store.customer(uow.conn, event.customer_id)


def placed_customer(uow: UnitOfWork, customer_id: str | None, order_id: str, what: str) -> dict:
    """The customer of an order milestone. One that overtook its OrderPlaced (another topic) for a
    customer not yet learned waits for it: parked and retried, later events of its order behind it."""
    row = store.customer(uow.conn, customer_id) if customer_id else None
    if row is None and customer_id and store.order(uow.conn, order_id) is None:
        raise TransientError(f"{what}: waiting for the order's OrderPlaced (customer {customer_id!r} not yet known)")
    return known_customer(uow, customer_id, what)


def on_order_placed(event: OrderPlaced, uow: UnitOfWork, *, policy: Policy) -> None:
    customer = learned_customer(uow, event, policy)
    store.record_order(uow.conn, order_id=event.order_id, customer_id=event.customer_id, placed_at=event.placed_at,
                       channel=event.channel, total=event.total.amount, currency=event.total.currency,
                       standing_order_id=event.standing_order_id)
    store.catch_up_order(uow.conn, event.order_id)
    _milestone(uow, event.customer_id, event.order_id, "placed", event.placed_at,
               f"Order {event.order_id} placed ({event.channel}): {len(event.lines)} line(s), total {event.total}",
               {"channel": event.channel, "total": format(event.total.amount, "f"), "currency": event.total.currency})
    for parked in parking.waiting(uow.conn, event.order_id):
        parking.unpark(uow.conn, event.order_id, parked.slot)
        _apply_shipment(uow, customer, parked.event, policy)
    refresh_reorder_task(uow, customer, policy)


def on_order_confirmed(event: OrderConfirmed, uow: UnitOfWork) -> None:
    placed_customer(uow, event.customer_id, event.order_id, f"order {event.order_id} confirmed")
    store.set_confirmation(uow.conn, event.order_id, event.confirmation_number)
    _milestone(uow, event.customer_id, event.order_id, "confirmed", event.confirmed_at,
               f"Order {event.order_id} confirmed as {event.confirmation_number}",
               {"confirmation_number": event.confirmation_number})


def on_order_shipped(event: OrderShipped, uow: UnitOfWork, *, policy: Policy) -> None:
    customer_id = event.customer_id
    if customer_id is None:
        # Upstream warehouses may leave the customer out; the order we recorded names it.
        placed = store.order(uow.conn, event.order_id)
        if placed is None:
            log.info("shipment of order %s parked until the order is known", event.order_id)
            parking.park(uow.conn, subject=event.order_id, slot=event.tracking_number, event=event,
                         waiting_for="the order's OrderPlaced (the shipment names no customer)", now=uow.now())
            return
        customer_id = placed["customer_id"]
    _apply_shipment(uow, placed_customer(uow, customer_id, event.order_id, f"order {event.order_id} shipped"), event,
                    policy)


def on_order_cancelled(event: OrderCancelled, uow: UnitOfWork, *, policy: Policy) -> None:
    customer = placed_customer(uow, event.customer_id, event.order_id, f"order {event.order_id} cancelled")
    store.mark_cancelled(uow.conn, event.order_id, event.cancelled_at)
    _milestone(uow, event.customer_id, event.order_id, "cancelled", event.cancelled_at,
               f"Order {event.order_id} cancelled: {event.reason}", {"reason": event.reason})
    refresh_reorder_task(uow, customer, policy)  # a cancelled order is not a purchase: the cadence changes


def _apply_shipment(uow: UnitOfWork, customer: dict, event: OrderShipped, policy: Policy) -> None:
    # One entry per parcel; the follow-up call is once per order, however many parcels or copies.
    _milestone(uow, customer["customer_id"], event.order_id, f"shipped:{event.tracking_number}", event.shipped_at,
               f"Order {event.order_id} shipped by {event.carrier} (tracking {event.tracking_number}) "
               f"from {event.distribution_centre}",
               {"carrier": event.carrier, "tracking_number": event.tracking_number,
                "distribution_centre": event.distribution_centre})
    store.mark_shipped(uow.conn, event.order_id, event.shipped_at)
    placed = store.order(uow.conn, event.order_id)
    reference = (placed or {}).get("confirmation_number") or event.order_id
    commands.open_task(uow, policy, customer_id=customer["customer_id"], salesperson_id=customer["salesperson_id"],
                       kind="order_follow_up", title=f"Follow up on receipt of order {reference}",
                       due_at=tasks.follow_up_due(event.shipped_at, policy), created_by="crm",
                       notes=f"Shipped {event.shipped_at:%Y-%m-%d} by {event.carrier}, tracking {event.tracking_number}.",
                       cause_key=tasks.follow_up_cause(event.order_id))


def _milestone(uow: UnitOfWork, customer_id: str, order_id: str, milestone: str, at, summary: str,
               detail: dict) -> None:
    store.add_entry(uow.conn, entry_id=f"order:{order_id}:{milestone}", customer_id=customer_id, kind="order",
                    subtype=f"order_{milestone.split(':')[0]}", occurred_at=at, summary=summary, source="orders",
                    order_id=order_id, detail=detail, now=uow.now())


def refresh_reorder_task(uow: UnitOfWork, customer: dict, policy: Policy) -> None:
    """One open automatic reorder call per customer, predicted from their latest order: a newer
    order (or a cancellation) replaces the prediction, and the call it replaces is withdrawn."""
    store.lock_customer(uow.conn, customer["customer_id"])
    prediction = tasks.predict_reorder(store.cadence_orders(uow.conn, customer["customer_id"]), policy)
    cause = tasks.reorder_cause(customer["customer_id"], prediction.based_on_order) if prediction else None
    for stale in task_store.open_automatic_reorder_tasks(uow.conn, customer["customer_id"]):
        if stale["cause_key"] != cause:
            commands.cancel(uow, stale, "superseded: the customer's ordering changed")
    if prediction is None:
        return
    days = prediction.cadence.total_seconds() / 86400
    commands.open_task(uow, policy, customer_id=customer["customer_id"], salesperson_id=customer["salesperson_id"],
                       kind="reorder_call", title=f"Remind {customer['name']} to reorder",
                       due_at=prediction.call_due_at, created_by="crm", cause_key=cause,
                       notes=f"Orders about every {days:.0f} days; next order expected around "
                             f"{prediction.next_order_at:%Y-%m-%d}.")


# --- reminders ------------------------------------------------------------------------------


def on_timer_fired(event: TimerFired, uow: UnitOfWork) -> None:
    if event.owner != commands.OWNER:
        return  # another service's timer on the shared topic
    if event.kind != commands.REMINDER_KIND:
        raise Rejected(f"crm has no timers of kind {event.kind!r}")
    reminder_id = event.timer_id
    reminder = task_store.reminder(uow.conn, reminder_id)
    task_id = event.payload.get("task_id") or (reminder or {}).get("task_id")
    task = task_store.task(uow.conn, task_id, lock=True) if task_id else None
    if task is None:
        raise Rejected(f"timer {reminder_id} is for a task the CRM does not know ({task_id!r})")
    if task["status"] != "open" or task["reminder_id"] != reminder_id:
        log.info("reminder %s for task %s not sent: task is %s, current reminder %s", reminder_id,
                 task["task_id"], task["status"], task["reminder_id"])
        return
    if not task_store.settle_reminder(uow.conn, reminder_id, "sent", uow.now()):
        return  # the timer fired again (a retried scheduler): it was sent the first time
    salesperson = store.salesperson(uow.conn, task["salesperson_id"])
    uow.emit(ReminderDue(task_id=task["task_id"], reminder_id=reminder_id, customer_id=task["customer_id"],
                         customer_name=task["customer_name"], salesperson_id=task["salesperson_id"],
                         salesperson_email=salesperson["email"], title=task["title"], due_at=task["due_at"],
                         language=salesperson["language"], time_zone=salesperson["time_zone"]),
             event_id=deterministic_id("ReminderDue", reminder_id))


def on_invoice_overdue(event: InvoiceOverdue, uow: UnitOfWork, *, policy: Policy) -> None:
    """An overdue invoice is the owning salesperson's call to make: one task per invoice, opened at
    its first reminder step (later steps of the same invoice find it and open none)."""
    customer = store.customer(uow.conn, event.customer_id)
    if customer is None:
        # accounts are often kept for customers the CRM has no profile for: nobody to give the task to
        log.info("invoice %s overdue for %s, who has no CRM profile: no task", event.invoice_number,
                 event.customer_id)
        return
    hold = " The account is on hold." if event.on_hold else ""
    commands.open_task(uow, policy, customer_id=event.customer_id,
                       salesperson_id=customer["salesperson_id"], kind="custom",
                       title=f"Call {customer['name']} about overdue invoice {event.invoice_number}",
                       due_at=event.noticed_at, created_by="crm", cause_key=f"overdue:{event.invoice_number}",
                       notes=f"{event.open_amount} open, {event.days_overdue} days past its due date "
                             f"{event.due_date.isoformat()}.{hold}")


HANDLERS = {
    "ContactLogged": on_contact_logged,
    "NotificationSent": on_notification_sent,
    "SupplierAccountChanged": on_supplier_account_changed,
    "OrderPlaced": on_order_placed,
    "OrderConfirmed": on_order_confirmed,
    "OrderShipped": on_order_shipped,
    "OrderCancelled": on_order_cancelled,
    "TimerFired": on_timer_fired,
    "InvoiceOverdue": on_invoice_overdue,
    "StandingOrderChanged": on_standing_order_changed,
}
