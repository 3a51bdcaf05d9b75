"""Notifications on a database of their own: events through the real inbox and handlers queue
emails; the sender worker (its real code, stepped by the test) delivers them to a real SMTP
server (the session's, read back from its Maildir), one per order and kind. (Emails from events
published to the broker, with the service's own sender running, are tests/integration.)"""
from __future__ import annotations

import socket
from datetime import datetime, timezone
from email.header import decode_header, make_header

import pytest

from runtime.embedded import read_mail
from schemas import (OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped, PaymentDeclined, ReminderDue,
                     StandingOrderOccurrenceFailed)
from services.notifications.handlers import notification_id
from services.notifications.messages import MESSAGES
from services.notifications.sender import Relay, SenderWorker

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


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


def send_due(notifications, worker: SenderWorker | None = None, ctx=None, steps: int = 20) -> None:
    """The sender worker's loop, stepped until no email is due (the session's SMTP server by default)."""
    worker, ctx = worker or SenderWorker(), ctx or notifications.context()
    for _ in range(steps):
        if worker.deliver_next(ctx) is None:
            return


@pytest.fixture
def unique_mail(unique):
    """Addresses of this test's own: the session's Maildir holds every test's mail."""
    return lambda name, domain="example.es": f"{name}-{unique}@{domain}"


# --- tests -------------------------------------------------------------------------------

def test_order_confirmation_sent_once_in_the_customers_language(cfg, stack, notifications, unique_mail):
    order, customer, email, number = "o-1", "c-1", unique_mail("compras"), "SB-1A2B-3C4D"
    notifications.deliver(placed(order, customer, email, "es"))
    notifications.deliver(confirmed(order, customer, email, "es", number), event_id="ev-1")
    notifications.deliver(confirmed(order, customer, email, "es", number), event_id="ev-1")   # redelivered
    notifications.deliver(confirmed(order, customer, email, "es", number))                    # duplicated upstream
    send_due(notifications)

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
    assert notifications.query("SELECT count(*) AS n, min(status) AS status FROM notifications WHERE order_id = %s",
                               (order,)) == [{"n": 1, "status": "sent"}]
    [sent] = [e.data for e in notifications.outbox("NotificationSent", customer)]
    assert (sent["notification_id"], sent["kind"], sent["order_id"], sent["recipient"], sent["language"]) == \
        (nid, "order_confirmation", order, email, "es")


def test_shipped_before_the_order_is_known_is_parked_then_sent_once_with_the_confirmation_number(
        stack, notifications, unique_mail):
    order, customer, email, number = "o-1", "c-1", unique_mail("lager", "example.fr"), "SB-1A2B-3C4D"
    # an upstream warehouse system: no customer_id, and ahead of everything else
    shipped = OrderShipped(order_id=order, carrier="DHL Express", tracking_number="1Z999",
                           distribution_centre="Lyon DC", shipped_at=T0)
    notifications.deliver(shipped)
    notifications.deliver(shipped)   # and once more, with a new event id
    parked = "SELECT slot AS kind FROM parked WHERE subject = %s"
    assert notifications.query(parked, (order,)), "the early OrderShipped is parked"
    notifications.deliver(placed(order, customer, email, "fr", country="FR"))
    # the number the customer quotes is still unknown: the shipping email waits for it
    assert notifications.query(parked, (order,)) == [{"kind": "shipping_confirmation"}]
    notifications.deliver(confirmed(order, customer, email, "fr", number))
    send_due(notifications)
    assert not notifications.query("SELECT 1 FROM notifications WHERE order_id = %s AND status = 'pending'", (order,))

    by_kind = {m["X-Salesbus-Kind"]: m for m in mail_to(stack, email)}
    assert len(mail_to(stack, email)) == 2 and set(by_kind) == {"order_confirmation", "shipping_confirmation"}
    shipping = by_kind["shipping_confirmation"]
    assert subject(shipping) == f"Votre commande {number} a été expédiée"
    for part in parts(shipping).values():
        assert "1Z999" in part and number in part and "DHL Express" in part
    assert "Compras Iberia" in parts(shipping)["text/plain"]     # greeted by the delivery recipient
    assert not notifications.query(parked, (order,))


def test_payment_declined_before_the_order_says_what_happened_and_what_to_do(stack, notifications, unique_mail):
    order, customer, email = "o-1", "c-1", unique_mail("zakupy", "example.pl")
    notifications.deliver(PaymentDeclined(order_id=order, customer_id=customer, method="account",
                                          reason_code="credit_limit_exceeded", message="Limit 5000.00 PLN exceeded",
                                          declined_at=T0))
    assert notifications.query("SELECT 1 FROM parked WHERE subject = %s", (order,)), \
        "the early PaymentDeclined is parked"
    notifications.deliver(placed(order, customer, email, "pl", country="PL"))
    send_due(notifications)
    [msg] = mail_to(stack, email)
    pl = MESSAGES["pl"]
    assert subject(msg) == pl["pd_subject"].format(order=order)
    text = parts(msg)["text/plain"]
    assert pl["reason_credit_limit_exceeded"] in text and pl["next_credit_limit_exceeded"] in text
    assert "Limit 5000.00 PLN exceeded" in text
    assert msg["X-Salesbus-Kind"] == "payment_declined" and msg["Content-Language"] == "pl"


def test_cancellation_and_failed_standing_order_occurrence_are_emailed(stack, notifications, unique_mail):
    order, customer, email = "o-1", "c-1", unique_mail("nabava", "example.hr")
    notifications.deliver(placed(order, customer, email, "hr", country="HR"))
    notifications.deliver(OrderCancelled(order_id=order, customer_id=customer,
                                         reason="Proizvod BULB-60W više nije u ponudi", cancelled_at=T0))
    notifications.deliver(StandingOrderOccurrenceFailed.model_validate({
        "standing_order_id": "so-1", "occurrence": 3, "customer_id": customer,
        "reason": "BULB-60W is no longer sold", "delivery": delivery(email, "HR"), "language": "hr",
        "failed_at": T0}))
    send_due(notifications)
    assert len(mail_to(stack, email)) == 2
    by_kind = {m["X-Salesbus-Kind"]: m for m in mail_to(stack, email)}
    assert subject(by_kind["order_cancelled"]) == MESSAGES["hr"]["ca_subject"].format(order=order)
    assert "više nije u ponudi" in parts(by_kind["order_cancelled"])["text/plain"]
    assert "so-1" in subject(by_kind["standing_order_failed"])


def refusing_relay(port: int):
    return lambda settings: Relay("127.0.0.1", port, 5)


def test_email_stays_pending_while_the_relay_refuses_then_is_sent_once(stack, notifications, unique, unique_mail):
    salesperson, customer = unique_mail("rep", "salesbus.example"), "c-1"
    reminder = ReminderDue(task_id="t-1", reminder_id="r-1", customer_id=customer,
                           customer_name="Iberia Compras S.L.", salesperson_id="sp-1", salesperson_email=salesperson,
                           title="Call about the spring reorder", due_at=T0, language="en")
    notifications.deliver(reminder)
    query = "SELECT status, attempts, last_error FROM notifications WHERE reminder_id = 'r-1'"
    ctx = notifications.context()
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))   # bound, never listening: every connection is refused
        port = refusing.getsockname()[1]
        worker = SenderWorker(relay=refusing_relay(port), base_s=0.01, cap_s=0.02)
        while notifications.query(query)[0]["attempts"] < 2:
            worker.step(ctx)
        [row] = notifications.query(query)
        assert row["status"] == "pending" and f"port {port}" in row["last_error"]   # the relay's error, kept
        assert not mail_to(stack, salesperson)

    worker.relay = SenderWorker().relay   # the relay accepts again
    while notifications.query(query)[0]["status"] == "pending":
        worker.step(ctx)
    [msg] = mail_to(stack, salesperson)
    assert subject(msg) == "Reminder: Call about the spring reorder – Iberia Compras S.L."
    assert notifications.query(query)[0]["status"] == "sent"
    assert notifications.query(query)[0]["attempts"] >= 3
    [sent] = [e.data for e in notifications.outbox("NotificationSent", customer)]
    assert (sent["kind"], sent["recipient"], sent["order_id"]) == ("reminder", salesperson, None)
    assert len(mail_to(stack, salesperson)) == 1


# --- emails that can never go out end failed (issue 9) --------------------------------------

class PickyRelay:
    """An SMTP server (aiosmtpd handler) that refuses some recipients for good (550 to RCPT) and
    keeps what it accepted in memory."""

    def __init__(self):
        self.accepted: list[list[str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse-"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted.append(list(envelope.rcpt_tos))
        return "250 OK"


def reminder_to(address: str, name: str) -> ReminderDue:
    return ReminderDue(task_id=f"t-{name}", reminder_id=f"r-{name}", customer_id="c-1",
                       customer_name="Iberia Compras S.L.", salesperson_id="sp-1", salesperson_email=address,
                       title="Call about the spring reorder", due_at=T0, language="en")


def set_aside_count(reason: str) -> float:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value("salesbus_set_aside_total",
                                     {"service": "notifications", "where": "sender", "reason": reason}) or 0.0


def test_a_permanent_refusal_ends_failed_at_once_and_the_next_email_goes_out(notifications):
    """Before: a 5xx to RCPT was retried for ever (every 10 minutes, for years)."""
    from aiosmtpd.controller import Controller

    from runtime.embedded import free_port
    picky = PickyRelay()
    controller = Controller(picky, hostname="127.0.0.1", port=free_port())
    controller.start()
    before = set_aside_count("smtp_550")
    try:
        refused, accepted = "refuse-1@salesbus.example", "rep-1@salesbus.example"
        notifications.deliver(reminder_to(refused, "refused"))
        notifications.deliver(reminder_to(accepted, "accepted"))
        send_due(notifications, SenderWorker(relay=refusing_relay(controller.port)))
    finally:
        controller.stop()
    query = "SELECT status, attempts, last_error, failed_at FROM notifications WHERE reminder_id = %s"
    [row] = notifications.query(query, ("r-refused",))
    assert (row["status"], row["attempts"]) == ("failed", 1) and row["failed_at"] is not None
    assert row["last_error"].startswith(f"refused by 127.0.0.1:{controller.port}: SMTPRecipientsRefused")
    assert "550" in row["last_error"] and "5.1.1 mailbox unavailable" in row["last_error"]
    assert set_aside_count("smtp_550") - before == 1
    assert [accepted] in picky.accepted
    assert notifications.query(query, ("r-accepted",))[0]["status"] == "sent"


def test_an_email_failing_for_now_beyond_the_retry_window_ends_failed(stack, notifications, unique_mail):
    """Before: an email the relay kept refusing for now was retried for as long as the process lived."""
    address = unique_mail("rep-window", "salesbus.example")
    ctx = notifications.context()
    query = "SELECT status, attempts, last_error, failed_at FROM notifications WHERE reminder_id = 'r-window'"
    notifications.deliver(reminder_to(address, "window"))
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))   # bound, never listening: every connection is refused
        port = refusing.getsockname()[1]
        # the default window is Settings.email_retry_window_s (3 days)
        worker = SenderWorker(relay=refusing_relay(port), retry_window_s=1.0, base_s=0.05, cap_s=0.2)
        worker.step(ctx)
        # while the relay refuses, the operator sees it: a stall of the sender's relay
        assert ctx.stalls.longest()[0] == "smtp relay"
        while notifications.query(query)[0]["status"] == "pending":
            worker.step(ctx)
    [row] = notifications.query(query)
    assert row["status"] == "failed" and row["attempts"] >= 2 and row["failed_at"] is not None
    assert row["last_error"].startswith(f"gave up after {row['attempts']} attempts over ")
    assert "(retry window 1 s); last error: " in row["last_error"] and f"port {port}" in row["last_error"]
    # nothing is left to retry: the relay stall is gone
    worker.step(ctx)
    assert (s := ctx.stalls.longest()) is None or s[0] != "smtp relay"
    assert not mail_to(stack, address)


def test_an_email_whose_outcome_the_database_refuses_is_set_aside_and_the_batch_is_not_resent(notifications):
    """Before: one transaction per batch of 10, so a permanent refusal to record one email's
    outcome rolled back the whole batch, and the emails already handed to the relay were sent
    again on every retry."""
    sent: list[str] = []
    worker = SenderWorker(transport=lambda message, relay: sent.append(message["To"]))
    for name in ("first", "poison", "last"):
        notifications.deliver(reminder_to(f"rep-{name}@salesbus.example", name))
    # the database refuses, for good (an integrity error), to mark one of them sent
    notifications.query("""
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.status = 'sent' AND NEW.reminder_id = 'r-poison' THEN
            RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE UPDATE ON notifications FOR EACH ROW EXECUTE FUNCTION refuse_poison()""")
    ctx = notifications.context(email_batch_size=10)
    before = set_aside_count("unrecordable")
    for _ in range(3):
        worker.step(ctx)
    rows = {r["reminder_id"]: r for r in notifications.query(
        "SELECT reminder_id, status, last_error FROM notifications WHERE reminder_id LIKE 'r-%%'")}
    assert {k: r["status"] for k, r in rows.items()} == {"r-first": "sent", "r-poison": "failed", "r-last": "sent"}
    assert rows["r-poison"]["last_error"].startswith("its outcome could not be recorded: ")
    assert "refused for the test" in rows["r-poison"]["last_error"]
    assert sorted(sent) == sorted(f"rep-{n}@salesbus.example" for n in ("first", "poison", "last"))  # once each
    assert set_aside_count("unrecordable") - before == 1


def test_an_idle_sender_wakes_when_an_email_is_queued_not_at_its_safety_net(notifications):
    """Before: an idle sender polled every 0.5 s, so each email waited up to that long to go out.
    Now the queueing transaction's NOTIFY wakes it (here long before its 60 s safety net)."""
    import threading

    worker, ctx = SenderWorker(idle_s=60), notifications.context()
    worker.listen(ctx)
    woke = threading.Event()
    sleeper = threading.Thread(target=lambda: (worker.wait_for_email(ctx, 60), woke.set()), daemon=True)
    sleeper.start()
    try:
        assert not woke.wait(0.5), "the sender woke with nothing queued"
        notifications.deliver(reminder_to("rep-wake@salesbus.example", "wake"))
        assert woke.wait(20), "the sender slept through the queued email"
    finally:
        ctx.stopping.set()        # ends the wait within 0.25 s even if it failed
        sleeper.join(5)
        worker.close()
    assert not sleeper.is_alive()


def test_writing_an_orders_contact_waits_for_the_orders_lock(notifications):
    # remember_order takes lock_order's lock in its own statement (they were two statements): an
    # OrderPlaced on one replica must wait for an OrderShipped being parked on another, or it
    # could miss the parked row and the shipping email would wait forever
    import threading
    import time

    import psycopg
    from services.notifications import store

    done = threading.Event()
    with psycopg.connect(notifications.url) as holder:
        store.lock_order(holder, "o-locked")          # a transaction holding the order's lock

        def write():
            with psycopg.connect(notifications.url) as conn:
                store.remember_order(conn, order_id="o-locked", customer_id="c-1", email="b@example.com",
                                     recipient="B", language="en", country="PL", now=datetime.now(timezone.utc))
                conn.commit()
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        assert not done.is_set(), "the contact was written while another transaction held the order's lock"
        holder.commit()
    writer.join(10)
    assert done.is_set()
    [row] = notifications.query("SELECT email FROM order_contacts WHERE order_id = 'o-locked'")
    assert row["email"] == "b@example.com"
