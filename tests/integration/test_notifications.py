"""Notifications on the real broker, PostgreSQL and SMTP server: what only the running service
shows, an OrderConfirmed published to the bus (again, and redelivered) becoming one real email
sent by the service's own sender worker, and its NotificationSent reaching the bus. Every other
notifications behaviour (parking, languages, kinds, relay failures) is tested on the handler tier
(tests/handlers/test_notifications.py)."""
from __future__ import annotations


import psycopg
import pytest

from runtime.config import with_dbname
from services.notifications.handlers import notification_id
from tests.conftest import wait_until
from tests.handlers.test_notifications import confirmed, mail_to, parts, subject

pytestmark = pytest.mark.integration
WAIT = 60


@pytest.fixture(scope="module")
def notifications(harness):
    harness.start("notifications")
    return harness.procs["notifications"]


# --- what arrived ------------------------------------------------------------------------

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
    # (no OrderPlaced: a payments service another test file started would decide it and email too)
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
