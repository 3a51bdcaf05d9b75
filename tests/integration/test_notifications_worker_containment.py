"""Issue 9, workers: one poison row must never stop a worker (and with it the process and every
other row), and nothing waits for ever. On the real embedded stack (broker, PostgreSQL, SMTP):

- notifications: emails that can never be built are taken first, set aside as `failed` with the
  reason, and every good email still goes out; the process did not crash;
- parked events (notifications, orders, crm) that waited longer than parked_event_expiry_s move
  to parked_expired (runtime/parking.py, in each service's database), and a late OrderPlaced applies nothing from them;
- the simulated distribution centre sets aside an order whose shipment fails for good and ships
  the others.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from runtime import db
from runtime.clock import OffsetClock
from runtime.config import with_dbname
from runtime.containment import Stalls
from runtime.embedded import read_mail
from runtime.service import ServiceContext
from schemas import OrderConfirmed, OrderPlaced, OrderShipped, deterministic_id
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
WAIT = 60
LINES = [{"sku": "BULB-60W", "name": "Bulb 60 W", "quantity": 40, "unit_price": {"amount": "1.25", "currency": "EUR"}}]
TOTAL = {"amount": "50.00", "currency": "EUR"}


def delivery(email: str) -> dict:
    return {"recipient": "Nabava d.o.o.", "address_lines": ["Ilica 1"], "city": "Zagreb", "postal_code": "10000",
            "country": "HR", "phone": "+385 1 000 0000", "email": email}


def placed(order_id: str, customer_id: str, email: str) -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "lines": LINES, "total": TOTAL,
        # An approved card: when a payments service started by an earlier test file runs, it
        # verifies these orders instead of declining an account nobody opened (that decline's
        # email broke the one-email-per-order assertions once test_crm began starting payments).
        "delivery": delivery(email), "payment": {"mode": "card", "card_token": "tok_visa_approved"},
        "language": "en", "placed_at": T0})


def confirmed(order_id: str, customer_id: str, email: str, number: str) -> OrderConfirmed:
    return OrderConfirmed.model_validate({
        "order_id": order_id, "customer_id": customer_id, "confirmation_number": number, "lines": LINES,
        "total": TOTAL, "delivery": delivery(email), "language": "en", "confirmed_at": T0})


def q(cfg, service: str, sql: str, params=()) -> list[dict]:
    return q_url(with_dbname(cfg.database_url, service), sql, params)


def mail_to(stack, address: str) -> list:
    return [m for m in read_mail(stack.mail.maildir) if address in str(m["To"])]


def set_aside_count(service: str, where: str, reason: str) -> float:
    return REGISTRY.get_sample_value("salesbus_set_aside_total",
                                     {"service": service, "where": where, "reason": reason}) or 0.0


@pytest.fixture(scope="module")
def notifications(harness):
    harness.start("notifications")
    return harness.procs["notifications"]


# --- notifications: poison rows in the email queue --------------------------------------------

def queue_poison(cfg, notification_id: str, order_id: str, *, recipient: str, subject: str = "Order confirmed",
                 language: str = "en") -> None:
    """A row as a handler (or an older version of one, or a hand-edit) left it, due before anything
    else: the contract may refuse such values at the door, so the row is put in the queue directly."""
    q(cfg, "notifications",
      """INSERT INTO notifications (notification_id, kind, order_id, customer_id, recipient, language, subject,
                                    body_text, body_html, queued_at, next_attempt_at)
         VALUES (%s, 'order_confirmation', %s, 'c-poison', %s, %s, %s, 'text', '<p>html</p>', now(),
                 now() - interval '1 hour')""",
      (notification_id, order_id, recipient, language, subject))


def test_emails_that_cannot_be_built_end_failed_and_every_good_email_goes_out(cfg, bus, stack, notifications,
                                                                            unique):
    """Before: build_message raised, the exception left the sender loop, the process stopped, and
    restarted it took the same row first again: nobody got an email. A group address such as
    "a:b@example.com" (our pattern lets it through) was sent to the group's member."""
    group_member = f"member-{unique}@example.com"
    poison = {
        f"n-group-{unique}": dict(recipient=f"buyers-{unique}:{group_member}"),     # a group holding someone else
        f"n-header-{unique}": dict(recipient=f"ok-{unique}@example.com",
                                   subject="Order confirmed\r\nBcc: everyone@example.com"),  # header injection
        f"n-language-{unique}": dict(recipient=f"lang-{unique}@example.com", language="xx"),  # no NotificationSent
    }
    before = set_aside_count("notifications", "sender", "ValueError")
    for nid, values in poison.items():
        queue_poison(cfg, nid, f"o-{nid}", **values)
    good = [(f"o-good{i}-{unique}", f"c-good{i}-{unique}", f"good{i}-{unique}@example.hr") for i in range(3)]
    for order_id, customer_id, email in good:
        bus.publish(placed(order_id, customer_id, email))
        bus.publish(confirmed(order_id, customer_id, email, f"SB-{unique[:8].upper()}"))

    for order_id, _, email in good:
        wait_until(lambda: mail_to(stack, email), timeout=WAIT, message=f"the confirmation email to {email}")
    def poison_rows() -> list[dict]:
        rows = q(cfg, "notifications", "SELECT * FROM notifications WHERE notification_id = ANY(%s)", (list(poison),))
        return rows if rows and all(r["status"] == "failed" for r in rows) else []
    state = {r["notification_id"]: r for r in wait_until(poison_rows, timeout=WAIT,
                                                         message="the poison rows to be set aside as failed")}

    group = state[f"n-group-{unique}"]
    assert group["last_error"].startswith(f"the message cannot be built: ValueError: recipient "
                                          f"'buyers-{unique}:{group_member}' is not one plain email address")
    assert (group["attempts"], group["sent_at"]) == (1, None) and group["failed_at"] is not None
    assert "line" in state[f"n-header-{unique}"]["last_error"]          # "... linefeed or carriage return"
    assert "ValidationError" in state[f"n-language-{unique}"]["last_error"]
    assert mail_to(stack, group_member) == [] and mail_to(stack, "everyone@example.com") == []
    assert mail_to(stack, f"lang-{unique}@example.com") == []             # not sent and then rolled back
    for _, _, email in good:
        assert len(mail_to(stack, email)) == 1
    assert set_aside_count("notifications", "sender", "ValueError") - before == 2
    assert not notifications.crashed and notifications.alive(), "the notifications process went down"
    from services.notifications.service import SERVICE
    listed = {r["id"] for r in q(cfg, "notifications", SERVICE.set_aside["failed emails"])}
    assert set(poison) <= listed


# --- parked events wait a bounded time --------------------------------------------------------

def test_parked_events_that_waited_too_long_expire_in_notifications_orders_and_crm(cfg, bus, stack, harness,
                                                                                  notifications, unique):
    """Before: an event waiting for an OrderPlaced that never came stayed parked for ever, unseen."""
    harness.start("orders", "crm")
    order_id, customer_id, email = f"o-lost-{unique}", f"c-lost-{unique}", f"lost-{unique}@example.hr"
    # an upstream warehouse ships an order whose OrderPlaced was lost: each service parks it
    bus.publish(OrderShipped(order_id=order_id, carrier="DHL Freight", tracking_number=f"JD{unique}",
                             distribution_centre="DC Zagreb", shipped_at=T0))
    # one parking mechanism (runtime/parking.py): the same tables in each service's database
    services = ("notifications", "orders", "crm")
    for service in services:
        wait_until(lambda: q(cfg, service, "SELECT 1 FROM parked WHERE subject = %s", (order_id,)),
                   timeout=WAIT, message=f"the OrderShipped to be parked by {service}")
        # eight days pass (the default window is seven) for these rows only: the wait is real time
        q(cfg, service, "UPDATE parked SET waiting_since = waiting_since - interval '8 days' WHERE subject = %s",
          (order_id,))
    assert cfg.parked_event_expiry_s == 7 * 86400

    for service in services:
        [row] = wait_until(lambda: q(cfg, service, "SELECT * FROM parked_expired WHERE subject = %s", (order_id,)),
                           timeout=WAIT, message=f"the parked OrderShipped to expire in {service}")
        assert row["reason"].startswith("waited 8 days") and "OrderPlaced" in row["reason"], row["reason"]
        assert row["expired_at"] is not None and row["payload"]["tracking_number"] == f"JD{unique}"
        assert q(cfg, service, "SELECT 1 FROM parked WHERE subject = %s", (order_id,)) == []
        assert not harness.procs[service].crashed

    # The OrderPlaced turns up after all: what expired stays expired (no week-old shipping email).
    bus.publish(placed(order_id, customer_id, email))
    bus.publish(confirmed(order_id, customer_id, email, f"SB-{unique[:8].upper()}"))
    wait_until(lambda: mail_to(stack, email), timeout=WAIT, message="the confirmation email")
    kinds = [r["kind"] for r in q(cfg, "notifications", "SELECT kind FROM notifications WHERE order_id = %s",
                                  (order_id,))]
    assert kinds == ["order_confirmation"]
    wait_until(lambda: q(cfg, "orders", "SELECT 1 FROM orders WHERE order_id = %s", (order_id,)), timeout=WAIT)
    timeline = q(cfg, "orders", "SELECT event_type, outcome FROM order_timeline WHERE order_id = %s", (order_id,))
    assert ("OrderShipped", "applied") not in {(t["event_type"], t["outcome"]) for t in timeline}
    from runtime.set_aside import RUNTIME_SET_ASIDE
    assert f"{order_id}/shipping_confirmation" in {
        r["id"] for r in q(cfg, "notifications", RUNTIME_SET_ASIDE["expired parked events"])}


# --- the simulated distribution centre --------------------------------------------------------

@pytest.fixture
def private_orders(cfg, unique):
    """An orders database of the test's own: the simulator ships every confirmed order it sees."""
    from services.orders.service import SERVICE
    name = f"orders_t_{unique}"
    url = with_dbname(cfg.database_url, name)
    db.migrate(url, SERVICE.migrations)
    pool = db.make_pool(url, max_size=4, name=name)
    pool.wait(30)
    yield url, pool
    pool.close()
    with psycopg.connect(with_dbname(cfg.database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_simulated_centre_sets_aside_an_order_it_cannot_ship_and_ships_the_others(cfg, private_orders):
    """Before: the shipment's exception ended the worker and the process; restarted, the same
    order (the oldest confirmed) came first again and nothing shipped."""
    from services.orders.distribution_centre import simulated_distribution_centres
    from services.orders.service import SERVICE
    url, pool = private_orders
    orders = ["o-1-poison", "o-2-good", "o-3-good"]          # the poison one is the oldest confirmed
    with psycopg.connect(url, autocommit=True) as conn:
        for i, order_id in enumerate(orders):
            conn.execute(
                """INSERT INTO orders (order_id, customer_id, status, channel, total_amount, currency, delivery,
                                       payment_mode, language, placed_at, confirmation_number, confirmed_at,
                                       updated_at)
                   VALUES (%s, 'c-dc', 'confirmed', 'web', 50, 'EUR', %s, 'account', 'en', now(), %s,
                           now() - make_interval(mins => 10 - %s), now())""",
                (order_id, psycopg.types.json.Jsonb(delivery("dc@example.hr")), f"SB-DC-{i}", i))
        # a constraint this one order violates when shipped: a failing statement in the transaction
        conn.execute("""CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN
                          IF NEW.order_id = 'o-1-poison' AND NEW.status = 'shipped' THEN
                            RAISE EXCEPTION 'the carrier refuses this consignment' USING ERRCODE = 'check_violation';
                          END IF;
                          RETURN NEW;
                        END $$""")
        conn.execute("CREATE TRIGGER refuse_poison BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION refuse_poison()")

    ctx = ServiceContext(SERVICE, cfg.model_copy(update={"dc_ship_delay_s": 0.0}), pool, OffsetClock(),
                         threading.Event(), Stalls("orders"))
    worker = threading.Thread(target=simulated_distribution_centres, args=(ctx,), daemon=True)
    worker.start()
    status = lambda: {r["order_id"]: r["status"] for r in q_url(url, "SELECT order_id, status FROM orders")}  # noqa: E731
    try:
        wait_until(lambda: status() == {"o-1-poison": "confirmed", "o-2-good": "shipped", "o-3-good": "shipped"},
                   timeout=WAIT, message="the good orders to ship")
        [failure] = wait_until(lambda: q_url(url, "SELECT * FROM simulated_shipment_failures"), timeout=WAIT)
        threading.Event().wait(1.5)    # a few more passes: the set-aside order is not tried again
        assert worker.is_alive(), "the simulator stopped"
    finally:
        ctx.stopping.set()
        worker.join(10)
    assert failure["order_id"] == "o-1-poison" and failure["centre"] == "DC Zagreb"
    assert failure["reason"].startswith("CheckViolation: the carrier refuses this consignment")
    shipped = {r["key"] for r in q_url(url, "SELECT key FROM outbox WHERE topic = 'OrderShipped'")}
    assert shipped == {"o-2-good", "o-3-good"}      # the failed attempt's OrderShipped was forgotten
    timeline = q_url(url, "SELECT order_id FROM order_timeline WHERE event_type = 'OrderShipped'")
    assert sorted(t["order_id"] for t in timeline) == ["o-2-good", "o-3-good"]
    assert [r["id"] for r in q_url(url, SERVICE.set_aside["orders the simulated distribution centre could not ship"])] \
        == ["o-1-poison"]
    assert deterministic_id("OrderShipped", "o-1-poison") not in {
        r["event_id"] for r in q_url(url, "SELECT event_id FROM outbox")}


def q_url(url: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []
