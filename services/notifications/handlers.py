"""Turning events into queued emails. Handlers only render and INSERT a notification row;
the sender worker (sender.py) delivers it. One email per (order, kind), per standing-order
occurrence, per reminder: the unique keys of `notifications` make duplicates harmless.

An email about an order needs what only other events carry (the delivery email and
language from OrderPlaced, the confirmation number from OrderConfirmed). Topics are not
ordered relative to each other, so an event that arrives first is parked (runtime.parking,
under the order id, one slot per email kind) and rendered when the missing event arrives.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from babel.core import get_global

from runtime import parking
from runtime.errors import Rejected
from runtime.uow import UnitOfWork
from schemas import (InvoiceIssued, InvoiceOverdue, OrderCancelled, OrderConfirmed, OrderPlaced,
                     OrderRefunded, OrderShipped, PaymentDeclined, ReminderDue, StandingOrderOccurrenceFailed,
                     deterministic_id)
from services.notifications import store
from services.notifications.pdf import NoFont, render_pdf
from services.notifications.templates import compose, kind_of, render, resolve_language

log = logging.getLogger(__name__)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def notification_id(*about: object) -> str:
    return deterministic_id("notification", *about)


def time_zone_for(country: str) -> str:
    """The country's zone when it has only one (PL, FR, HR, VN...); otherwise UTC, which the
    templates print next to every time, rather than guessing the wrong side of a country."""
    zones = get_global("territory_zones").get(country, [])
    return zones[0] if len(zones) == 1 else "UTC"


# --- events that tell us about the order -------------------------------------------------

def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    # remember_order takes the order's lock (store.lock_order) before it writes the contact
    contact = store.remember_order(uow.conn, order_id=event.order_id, customer_id=event.customer_id,
                                   email=event.delivery.email, recipient=event.delivery.recipient,
                                   language=event.language, country=event.delivery.country, now=uow.now())
    _release_parked(uow, event.order_id, contact)


def on_order_confirmed(event: OrderConfirmed, uow: UnitOfWork) -> None:
    contact = store.remember_order(uow.conn, order_id=event.order_id, customer_id=event.customer_id,
                                   email=event.delivery.email, recipient=event.delivery.recipient,
                                   language=event.language, country=event.delivery.country, now=uow.now(),
                                   confirmation_number=event.confirmation_number)
    language = resolve_language(event.language)
    email = render(event, language, extra={"time_zone": time_zone_for(event.delivery.country)})
    store.queue(uow.conn, notification_id=notification_id(event.order_id, "order_confirmation"),
                kind="order_confirmation", order_id=event.order_id, customer_id=event.customer_id,
                recipient=event.delivery.email, language=language, subject=email.subject,
                body_text=email.text, body_html=email.html, now=uow.now())
    _release_parked(uow, event.order_id, contact)


# --- emails that need the order's contact details ----------------------------------------

def on_order_email(event: OrderShipped | PaymentDeclined | OrderCancelled | OrderRefunded, uow: UnitOfWork) -> None:
    """OrderShipped, PaymentDeclined, OrderCancelled, OrderRefunded: rendered now, or parked until
    the order is known."""
    store.lock_order(uow.conn, event.order_id)
    contact = store.order_contact(uow.conn, event.order_id)
    if _ready(event, contact):
        _queue_order_email(uow, event, contact)
        return
    log.info("%s for order %s parked until %s arrives", type(event).__name__, event.order_id,
             _waiting_for(contact))
    parking.park(uow.conn, subject=event.order_id, slot=kind_of(event), event=event,
                 waiting_for=_waiting_for(contact), now=uow.now())


def _waiting_for(contact: dict | None) -> str:
    return "the order's OrderPlaced" if contact is None else "the order's OrderConfirmed (its confirmation number)"


def _ready(event: Any, contact: dict | None) -> bool:
    if contact is None:
        return False
    # Every order that ships was confirmed first: the shipping email waits for its number,
    # which the customer quotes, rather than going out with only our internal order id.
    if isinstance(event, OrderShipped):
        return contact["confirmation_number"] is not None
    return True


def _queue_order_email(uow: UnitOfWork, event: Any, contact: dict) -> None:
    kind = kind_of(event)
    language = resolve_language(contact["language"])
    email = render(event, language, extra={"confirmation_number": contact["confirmation_number"],
                                           "time_zone": time_zone_for(contact["country"]),
                                           "recipient_name": contact["recipient"]})
    store.queue(uow.conn, notification_id=notification_id(event.order_id, kind), kind=kind,
                order_id=event.order_id, customer_id=contact["customer_id"], recipient=contact["email"],
                language=language, subject=email.subject, body_text=email.text, body_html=email.html,
                now=uow.now())


def _release_parked(uow: UnitOfWork, order_id: str, contact: dict) -> None:
    """Queue the parked emails of the order that `contact` (its row, just written) now allows."""
    for parked in parking.waiting(uow.conn, order_id):
        if _ready(parked.event, contact):
            _queue_order_email(uow, parked.event, contact)
            parking.unpark(uow.conn, order_id, parked.slot)
        elif parked.waiting_for != _waiting_for(contact):
            parking.park(uow.conn, subject=order_id, slot=parked.slot, event=parked.event,
                         waiting_for=_waiting_for(contact), now=uow.now())


# --- emails whose event carries everything -----------------------------------------------

def on_standing_order_occurrence_failed(event: StandingOrderOccurrenceFailed, uow: UnitOfWork) -> None:
    language = resolve_language(event.language)
    email = render(event, language, extra={"time_zone": time_zone_for(event.delivery.country)})
    store.queue(uow.conn, notification_id=notification_id("standing_order_failed", event.standing_order_id,
                                                          event.occurrence),
                kind="standing_order_failed", standing_order_id=event.standing_order_id,
                occurrence=event.occurrence, customer_id=event.customer_id, recipient=event.delivery.email,
                language=language, subject=email.subject, body_text=email.text, body_html=email.html,
                now=uow.now())


def on_reminder_due(event: ReminderDue, uow: UnitOfWork) -> None:
    if not _EMAIL.match(event.salesperson_email):
        # would be refused by every relay, retried for ever: say so now instead
        raise Rejected(f"salesperson_email {event.salesperson_email!r} is not an email address")
    language = resolve_language(event.language)
    # the salesperson's zone (ReminderDue.time_zone, added by crm); templates fall back to UTC
    email = render(event, language, extra={"time_zone": getattr(event, "time_zone", None)})
    store.queue(uow.conn, notification_id=notification_id("reminder", event.reminder_id), kind="reminder",
                reminder_id=event.reminder_id, customer_id=event.customer_id,
                recipient=event.salesperson_email, language=language, subject=email.subject,
                body_text=email.text, body_html=email.html, now=uow.now())


# --- supplier-account documents, to the account's billing contact -----------------------

def on_invoice_issued(event: InvoiceIssued, uow: UnitOfWork) -> None:
    """The invoice email, with the invoice as a PDF (the same content as the HTML part)."""
    if event.billing_email is None:
        log.info("invoice %s: the account has no billing email; nothing to send", event.invoice_number)
        return
    language = resolve_language(event.language)
    extra = {"time_zone": event.time_zone}
    email = render(event, language, extra=extra)
    try:
        attachment = (f"{event.invoice_number}.pdf", render_pdf(compose(event, language, extra=extra)))
    except NoFont as exc:
        # a deployment without the font: the invoice still goes out (its HTML part says it all)
        log.warning("invoice %s emailed without its PDF: %s", event.invoice_number, exc)
        attachment = None
    store.queue(uow.conn, notification_id=notification_id("invoice", event.invoice_number), kind="invoice",
                document=event.invoice_number, customer_id=event.customer_id, recipient=event.billing_email,
                language=language, subject=email.subject, body_text=email.text, body_html=email.html,
                now=uow.now(), attachment=attachment)


def on_invoice_overdue(event: InvoiceOverdue, uow: UnitOfWork) -> None:
    """One reminder email per invoice and step."""
    if event.billing_email is None:
        log.info("invoice %s overdue: the account has no billing email; nothing to send", event.invoice_number)
        return
    language = resolve_language(event.language)
    email = render(event, language)
    document = f"{event.invoice_number}/{event.step_days}"
    store.queue(uow.conn, notification_id=notification_id("invoice_overdue", document), kind="invoice_overdue",
                document=document, customer_id=event.customer_id, recipient=event.billing_email,
                language=language, subject=email.subject, body_text=email.text, body_html=email.html,
                now=uow.now())


HANDLERS = {
    "OrderPlaced": on_order_placed,
    "OrderConfirmed": on_order_confirmed,
    "OrderShipped": on_order_email,
    "PaymentDeclined": on_order_email,
    "OrderCancelled": on_order_email,
    "StandingOrderOccurrenceFailed": on_standing_order_occurrence_failed,
    "ReminderDue": on_reminder_due,
    "InvoiceIssued": on_invoice_issued,
    "InvoiceOverdue": on_invoice_overdue,
    "OrderRefunded": on_order_email,
}
