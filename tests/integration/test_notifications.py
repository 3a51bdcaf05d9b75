"""Notifications against the real broker, PostgreSQL and SMTP server: upstream events in,
real emails out (read from the embedded server's Maildir), one per order and kind."""
from __future__ import annotations

import socket
from datetime import datetime, timezone
from email.header import decode_header, make_header

import psycopg
import pytest

from runtime.config import with_dbname
from runtime.embedded import read_mail
from schemas import (OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped, PaymentDeclined, ReminderDue,
                     StandingOrderOccurrenceFailed)
from services.notifications.handlers import notification_id
from services.notifications.messages import MESSAGES
from services.notifications.sender import Relay
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
WAIT = 60


@pytest.fixture(scope="module")
def notifications(harness):
    harness.start("notifications")
    return harness.procs["notifications"]


# --- upstream events ---------------------------------------------------------------------

def delivery(email: str, country: str = "ES") -> dict:
    return {"recipient": "Compras Iberia", "address_lines": ["Calle Mayor 1"], "city": "Madrid",
            "postal_code": "28013", "country": country, "phone": "+34 91 000 0000", "email": email}


LINES = [{"sku": "BULB-60W", "name": "Bombilla 60 W", "quantity": 40, "unit_price": {"amount": "1.25", "currency": "EUR"}}]
TOTAL = {"amount": "50.00", "currency": "EUR"}


def placed(order_id: str, customer_id: str, email: str, language: str, country: str = "ES") -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "lines": LINES, "total": TOTAL,
        "delivery": delivery(email, country), "payment": {"mode": "account"}, "language": language,
        "placed_at": T0})


def confirmed(order_id: str, customer_id: str, email: str, language: str, number: str) -> OrderConfirmed:
    return OrderConfirmed.model_validate({
        "order_id": order_id, "customer_id": customer_id, "confirmation_number": number, "lines": LINES,
        "total": TOTAL, "delivery": delivery(email), "language": language, "confirmed_at": T0})


# --- what arrived ------------------------------------------------------------------------

def mail_to(stack, address: str) -> list:
    return [m for m in read_mail(stack.mail.maildir) if m["To"] == address]


def subject(msg) -> str:
    return str(make_header(decode_header(msg["Subject"])))


def parts(msg) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
            for p in msg.walk() if not p.is_multipart()}


def rows(cfg, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(with_dbname(cfg.database_url, "notifications")) as conn:
        return conn.execute(sql, params).fetchall()


def notification_sent(cfg, customer_id: str) -> list[dict]:
    from runtime.tap import tap
    return [rec.event()["data"] for rec in tap(cfg.kafka_common(), ["NotificationSent"], follow=False,
                                                 idle_exit_s=1.0, keys={customer_id})]


def handled(cfg, event_id: str) -> bool:
    return bool(rows(cfg, "SELECT 1 FROM inbox WHERE event_id = %s", (event_id,)))


def published(cfg) -> bool:
    return not rows(cfg, "SELECT 1 FROM outbox WHERE published_at IS NULL")


# --- tests -------------------------------------------------------------------------------

def test_order_confirmation_sent_once_in_the_customers_language(cfg, bus, stack, notifications, unique):
    order, customer, email, number = f"o-{unique}", f"c-{unique}", f"compras-{unique}@example.es", f"SB-{unique[:8].upper()}"
    bus.publish(placed(order, customer, email, "es"))
    first = bus.publish(confirmed(order, customer, email, "es", number))
    bus.publish(confirmed(order, customer, email, "es", number), event_id=first)   # redelivered
    duplicate = bus.publish(confirmed(order, customer, email, "es", number))       # duplicated upstream
    wait_until(lambda: mail_to(stack, email), timeout=WAIT, message="the confirmation email")
    wait_until(lambda: handled(cfg, duplicate), timeout=WAIT, message="the duplicate to be consumed")
    wait_until(lambda: rows(cfg, "SELECT 1 FROM notifications WHERE order_id = %s AND status = 'sent'", (order,)),
               timeout=WAIT, message="the email to be marked sent")
    wait_until(lambda: published(cfg), timeout=WAIT, message="NotificationSent to be published")

    [msg] = mail_to(stack, email)
    assert subject(msg) == f"Pedido confirmado – {number}"
    body = parts(msg)
    assert number in body["text/plain"] and number in body["text/html"]
    assert "Bombilla 60 W" in body["text/plain"]
    nid = notification_id(order, "order_confirmation")
    assert msg["Message-ID"] == f"<{nid}@salesbus.example>"
    assert (msg["X-Salesbus-Kind"], msg["X-Salesbus-Language"], msg["Content-Language"]) == \
        ("order_confirmation", "es", "es")
    assert msg["From"] == cfg.smtp_sender
    assert rows(cfg, "SELECT count(*) FROM notifications WHERE order_id = %s", (order,)) == [(1,)]
    [sent] = notification_sent(cfg, customer)
    assert (sent["notification_id"], sent["kind"], sent["order_id"], sent["recipient"], sent["language"]) == \
        (nid, "order_confirmation", order, email, "es")


def test_shipped_before_the_order_is_known_is_parked_then_sent_once_with_the_confirmation_number(
        cfg, bus, stack, notifications, unique):
    order, customer, email, number = f"o-{unique}", f"c-{unique}", f"lager-{unique}@example.fr", f"SB-{unique[:8].upper()}"
    # an upstream warehouse system: no customer_id, and ahead of everything else
    shipped = OrderShipped(order_id=order, carrier="DHL Express", tracking_number=f"1Z{unique}",
                           distribution_centre="Lyon DC", shipped_at=T0)
    bus.publish(shipped)
    bus.publish(shipped)   # and once more, with a new event id
    wait_until(lambda: rows(cfg, "SELECT 1 FROM parked_events WHERE order_id = %s", (order,)), timeout=WAIT,
               message="the early OrderShipped to be parked")
    placed_id = bus.publish(placed(order, customer, email, "fr", country="FR"))
    wait_until(lambda: handled(cfg, placed_id), timeout=WAIT, message="OrderPlaced to be consumed")
    # the number the customer quotes is still unknown: the shipping email waits for it
    assert rows(cfg, "SELECT kind FROM parked_events WHERE order_id = %s", (order,)) == [("shipping_confirmation",)]
    bus.publish(confirmed(order, customer, email, "fr", number))
    wait_until(lambda: len(mail_to(stack, email)) >= 2, timeout=WAIT, message="confirmation and shipping emails")
    wait_until(lambda: not rows(cfg, "SELECT 1 FROM notifications WHERE order_id = %s AND status = 'pending'",
                                (order,)), timeout=WAIT)

    by_kind = {m["X-Salesbus-Kind"]: m for m in mail_to(stack, email)}
    assert len(mail_to(stack, email)) == 2 and set(by_kind) == {"order_confirmation", "shipping_confirmation"}
    shipping = by_kind["shipping_confirmation"]
    assert subject(shipping) == f"Votre commande {number} a été expédiée"
    for part in parts(shipping).values():
        assert f"1Z{unique}" in part and number in part and "DHL Express" in part
    assert "Compras Iberia" in parts(shipping)["text/plain"]     # greeted by the delivery recipient
    assert not rows(cfg, "SELECT 1 FROM parked_events WHERE order_id = %s", (order,))


def test_payment_declined_before_the_order_says_what_happened_and_what_to_do(cfg, bus, stack, notifications, unique):
    order, customer, email = f"o-{unique}", f"c-{unique}", f"zakupy-{unique}@example.pl"
    bus.publish(PaymentDeclined(order_id=order, customer_id=customer, method="account",
                                reason_code="credit_limit_exceeded", message="Limit 5000.00 PLN exceeded",
                                declined_at=T0))
    wait_until(lambda: rows(cfg, "SELECT 1 FROM parked_events WHERE order_id = %s", (order,)), timeout=WAIT,
               message="the early PaymentDeclined to be parked")
    bus.publish(placed(order, customer, email, "pl", country="PL"))
    [msg] = wait_until(lambda: mail_to(stack, email), timeout=WAIT, message="the payment declined email")
    pl = MESSAGES["pl"]
    assert subject(msg) == pl["pd_subject"].format(order=order)
    text = parts(msg)["text/plain"]
    assert pl["reason_credit_limit_exceeded"] in text and pl["next_credit_limit_exceeded"] in text
    assert "Limit 5000.00 PLN exceeded" in text
    assert msg["X-Salesbus-Kind"] == "payment_declined" and msg["Content-Language"] == "pl"


def test_cancellation_and_failed_standing_order_occurrence_are_emailed(cfg, bus, stack, notifications, unique):
    order, customer, email = f"o-{unique}", f"c-{unique}", f"nabava-{unique}@example.hr"
    bus.publish(placed(order, customer, email, "hr", country="HR"))
    bus.publish(OrderCancelled(order_id=order, customer_id=customer, reason="Proizvod BULB-60W više nije u ponudi",
                               cancelled_at=T0))
    bus.publish(StandingOrderOccurrenceFailed.model_validate({
        "standing_order_id": f"so-{unique}", "occurrence": 3, "customer_id": customer,
        "reason": "BULB-60W is no longer sold", "delivery": delivery(email, "HR"), "language": "hr",
        "failed_at": T0}))
    wait_until(lambda: len(mail_to(stack, email)) == 2, timeout=WAIT, message="cancellation and standing order emails")
    by_kind = {m["X-Salesbus-Kind"]: m for m in mail_to(stack, email)}
    assert subject(by_kind["order_cancelled"]) == MESSAGES["hr"]["ca_subject"].format(order=order)
    assert "više nije u ponudi" in parts(by_kind["order_cancelled"])["text/plain"]
    assert f"so-{unique}" in subject(by_kind["standing_order_failed"])


def test_email_stays_pending_while_the_relay_refuses_then_is_sent_once(cfg, bus, stack, notifications, unique,
                                                                      monkeypatch):
    from services.notifications.service import SENDER
    salesperson, customer = f"rep-{unique}@salesbus.example", f"c-{unique}"
    reminder = ReminderDue(task_id=f"t-{unique}", reminder_id=f"r-{unique}", customer_id=customer,
                           customer_name="Iberia Compras S.L.", salesperson_id="sp-1", salesperson_email=salesperson,
                           title="Call about the spring reorder", due_at=T0, language="en")
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))   # bound, never listening: every connection is refused
        monkeypatch.setattr(SENDER, "relay", lambda s: Relay("127.0.0.1", refusing.getsockname()[1], 5))
        bus.publish(reminder)
        query = "SELECT status, attempts, last_error FROM notifications WHERE reminder_id = %s"
        [(status, attempts, error)] = wait_until(
            lambda: [r for r in rows(cfg, query, (f"r-{unique}",)) if r[1] >= 2], timeout=WAIT,
            message="two refused attempts")
        assert status == "pending" and f"port {refusing.getsockname()[1]}" in error   # the relay's error, kept
        assert not mail_to(stack, salesperson)
    monkeypatch.undo()   # the relay accepts again

    [msg] = wait_until(lambda: mail_to(stack, salesperson), timeout=WAIT, message="the email after the relay recovered")
    assert subject(msg) == "Reminder: Call about the spring reorder – Iberia Compras S.L."
    wait_until(lambda: rows(cfg, query, (f"r-{unique}",))[0][0] == "sent", timeout=WAIT)
    wait_until(lambda: published(cfg), timeout=WAIT, message="NotificationSent to be published")
    assert rows(cfg, query, (f"r-{unique}",))[0][1] >= 3
    [sent] = notification_sent(cfg, customer)
    assert (sent["kind"], sent["recipient"], sent["order_id"]) == ("reminder", salesperson, None)
    assert len(mail_to(stack, salesperson)) == 1
