"""The email sender without a relay or a database: retries with backoff (never a skip), the
message it builds, and that a delivery is marked and announced only when the relay accepted it."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from email import message_from_bytes, policy

import aiosmtplib
import pytest

from runtime.config import Settings
from runtime.uow import UnitOfWork
from schemas import deterministic_id
from services.notifications import sender, store
from services.notifications.handlers import time_zone_for
from services.notifications.sender import (Outcome, Relay, SenderWorker, attempt_delivery, build_message,
                                           retry_delay_s)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
ROW = {"notification_id": "0b7c6f43-1111-5222-8333-944455556666", "kind": "order_confirmation",
       "order_id": "o-1", "customer_id": "c-1", "recipient": "ana@example.hr", "language": "hr",
       "subject": "Narudžba potvrđena – SB-7K3M-9QXD", "body_text": "Broj potvrde: SB-7K3M-9QXD\n",
       "body_html": "<p>Broj potvrde: SB-7K3M-9QXD</p>", "attempts": 0}


class FlakyRelay:
    """A fake SMTP function: refuses the first `failures` messages, then accepts."""

    def __init__(self, failures: int, error: Exception | None = None):
        self.failures, self.error = failures, error or aiosmtplib.SMTPConnectError("connection refused")
        self.accepted: list = []
        self.tries = 0

    def __call__(self, message) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise self.error
        self.accepted.append(message)


def test_backoff_doubles_from_one_second_and_is_capped():
    assert [retry_delay_s(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert retry_delay_s(40) == 600 and retry_delay_s(10_000) == 600   # capped, no overflow
    assert retry_delay_s(3, base_s=0.5, cap_s=1.5) == 1.5


def test_refused_twice_then_accepted_counts_every_attempt_and_keeps_the_error():
    relay = FlakyRelay(failures=2)
    message = build_message(ROW, sender="orders@salesbus.example", date=T0)
    attempts, outcomes = 0, []
    while not outcomes or not outcomes[-1].sent:
        outcome = attempt_delivery(message, relay, attempts)
        outcomes.append(outcome)
        attempts = outcome.attempts
        assert len(outcomes) < 10, "a refused email must be retried until accepted, not given up"
    assert [(o.sent, o.attempts, o.retry_in_s) for o in outcomes] == [(False, 1, 1), (False, 2, 2), (True, 3, None)]
    assert "SMTPConnectError" in outcomes[0].error and "connection refused" in outcomes[0].error
    assert relay.accepted == [message]


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "refused"), TimeoutError("timed out"),
                                   aiosmtplib.SMTPRecipientsRefused([]), aiosmtplib.SMTPServerDisconnected("bye")])
def test_every_relay_failure_becomes_a_retry(error):
    outcome = attempt_delivery(build_message(ROW, sender="o@x.example", date=T0), FlakyRelay(1, error), 4)
    assert outcome == Outcome(False, 5, outcome.error, 16)
    assert type(error).__name__ in outcome.error


def test_a_bug_in_the_transport_is_not_mistaken_for_a_relay_failure():
    with pytest.raises(KeyError):
        attempt_delivery(build_message(ROW, sender="o@x.example", date=T0), FlakyRelay(1, KeyError("bug")), 0)


def test_message_is_multipart_text_and_html_with_a_stable_message_id_and_headers():
    first = build_message(ROW, sender="orders@salesbus.example", date=T0)
    again = build_message({**ROW, "attempts": 3}, sender="orders@salesbus.example", date=T0.replace(hour=11))
    assert first["Message-ID"] == again["Message-ID"] == f"<{ROW['notification_id']}@salesbus.example>"
    parsed = message_from_bytes(first.as_bytes(), policy=policy.default)   # as the relay receives it
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert "SB-7K3M-9QXD" in parsed.get_body(("plain",)).get_content()
    assert "SB-7K3M-9QXD" in parsed.get_body(("html",)).get_content()
    assert parsed["Subject"] == ROW["subject"]
    assert (parsed["From"], parsed["To"]) == ("orders@salesbus.example", "ana@example.hr")
    assert (parsed["X-Salesbus-Kind"], parsed["X-Salesbus-Language"], parsed["Content-Language"]) == \
        ("order_confirmation", "hr", "hr")


class FakeConn:
    """Only what the worker asks of a connection itself: savepoints (store calls are faked)."""

    def __init__(self):
        self.savepoints = 0

    @contextmanager
    def transaction(self):
        self.savepoints += 1
        yield


class FakeUow:
    savepoint = UnitOfWork.savepoint   # the real one, over the fake connection

    def __init__(self):
        self.conn, self.emitted = FakeConn(), []

    def now(self):
        return T0

    def emit(self, event, *, event_id=None):
        self.emitted.append((event, event_id))


class FakeCtx:
    def __init__(self):
        self.settings = Settings(smtp_host="relay.test", smtp_port=2525, smtp_sender="orders@salesbus.example")
        self.stopping = threading.Event()
        self.uows: list[FakeUow] = []

    @contextmanager
    def unit_of_work(self):
        uow = FakeUow()
        self.uows.append(uow)
        yield uow


def fake_mark_sent_many(monkeypatch):
    """The batch's sent emails in one call: recorded through the fake mark_sent, one by one."""
    monkeypatch.setattr(store, "mark_sent_many", lambda conn, sent, *, sent_at: [
        store.mark_sent(conn, nid, attempts=attempts, sent_at=sent_at) for nid, attempts in sent])


@pytest.fixture
def queue(monkeypatch):
    """One pending row in a fake store; records what the worker writes back."""
    state = {"row": dict(ROW), "writes": []}
    monkeypatch.setattr(store, "due", lambda conn, limit: [dict(state["row"])] if state["row"]["attempts"] >= 0 else [])
    monkeypatch.setattr(store, "mark_sent", lambda conn, nid, **kw: (state["writes"].append(("sent", kw)),
                                                                     state["row"].update(attempts=-1)))
    fake_mark_sent_many(monkeypatch)

    def failed(conn, nid, **kw):
        state["writes"].append(("failed", kw))
        state["row"]["attempts"] = kw["attempts"]
    monkeypatch.setattr(store, "record_failure", failed)

    def set_aside(conn, nid, **kw):
        state["writes"].append(("set aside", kw))
        state["row"]["attempts"] = -1       # status failed: never due again
    monkeypatch.setattr(store, "mark_failed", set_aside)
    monkeypatch.setattr(store, "has_pending", lambda conn: state["row"]["attempts"] >= 0)
    monkeypatch.setattr(store, "pending_backlog", lambda conn: (int(state["row"]["attempts"] >= 0), 0.0))
    return state


def test_worker_marks_and_announces_only_what_the_relay_accepted(queue):
    relay = FlakyRelay(failures=1)
    targets = []
    worker = SenderWorker(relay=lambda s: Relay(s.smtp_host, s.smtp_port),
                          transport=lambda m, r: (targets.append(r), relay(m)))
    ctx = FakeCtx()
    first = worker.deliver_next(ctx)
    assert not first.sent and ctx.uows[0].emitted == []          # refused: nothing announced
    assert queue["writes"] == [("failed", {"attempts": 1, "error": first.error, "retry_in_s": 1})]
    second = worker.deliver_next(ctx)
    assert second.sent and second.attempts == 2
    assert queue["writes"][1] == ("sent", {"attempts": 2, "sent_at": T0})
    [(event, event_id)] = ctx.uows[1].emitted
    assert (event.notification_id, event.kind, event.order_id, event.language) == \
        (ROW["notification_id"], "order_confirmation", "o-1", "hr")
    assert event_id == deterministic_id("NotificationSent", ROW["notification_id"])
    assert targets == [Relay("relay.test", 2525)] * 2
    assert worker.deliver_next(ctx) is None                       # nothing left


def test_worker_loop_returns_when_the_service_stops(queue):
    ctx = FakeCtx()
    calls = []
    worker = SenderWorker(transport=lambda m, r: (calls.append(m), ctx.stopping.set()))
    t = threading.Thread(target=worker, args=(ctx,))
    t.start()
    t.join(5)
    assert not t.is_alive() and len(calls) == 1


def test_dates_use_the_country_zone_only_when_it_has_one():
    assert time_zone_for("PL") == "Europe/Warsaw"
    assert time_zone_for("VN") == "Asia/Ho_Chi_Minh"
    assert time_zone_for("US") == "UTC"      # several zones: do not guess
    assert time_zone_for("ZZ") == "UTC"


def test_long_vietnamese_subject_keeps_its_spaces_after_transport():
    """Regression: header folding (ours, then aiosmtplib's email.policy.SMTP) split the subject
    into two encoded words and the space between "khách" and "đã" was lost on decoding."""
    import email as email_lib
    import email.policy
    from datetime import datetime, timezone
    from services.notifications.sender import build_message, wire_bytes
    subject = "Đơn hàng SB-H08K-JHKV của Quý khách đã được gửi đi"
    row = {"recipient": "a@example.vn", "subject": subject, "body_text": "x", "body_html": "<p>x</p>",
           "notification_id": "n-1", "kind": "shipping_confirmation", "language": "vi"}
    msg = build_message(row, sender="orders@salesbus.example", date=datetime(2026, 1, 1, tzinfo=timezone.utc))
    back = email_lib.message_from_bytes(wire_bytes(msg), policy=email.policy.default)
    assert back["Subject"] == subject


# --- what is permanent, what is for now (issue 9: one email must never stop the others) ---------

R = aiosmtplib.SMTPRecipientRefused


@pytest.mark.parametrize("error, code", [
    (aiosmtplib.SMTPRecipientsRefused([R(550, "5.1.1 mailbox unavailable", "a@x.example")]), 550),
    (aiosmtplib.SMTPRecipientsRefused([R(553, "5.1.3 bad address", "a@x.example"),
                                       R(550, "5.1.1 unknown", "b@x.example")]), 550),
    (R(553, "5.1.3 bad destination mailbox address syntax", "a@x.example"), 553),
    (aiosmtplib.SMTPDataError(554, "5.7.1 message rejected"), 554),
    (aiosmtplib.SMTPResponseException(552, "5.3.4 message too big"), 552),
])
def test_a_5xx_refusal_of_the_recipient_or_the_data_is_permanent(error, code):
    assert sender.permanent_refusal(error) == code
    outcome = attempt_delivery(build_message(ROW, sender="o@x.example", date=T0), FlakyRelay(1, error), 2)
    assert outcome == Outcome(False, 3, outcome.error, None, permanent=True, code=code)
    assert type(error).__name__ in outcome.error


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "refused"), TimeoutError("timed out"),
    aiosmtplib.SMTPConnectError("connection refused"), aiosmtplib.SMTPServerDisconnected("bye"),
    aiosmtplib.SMTPReadTimeoutError("read timed out"), aiosmtplib.SMTPConnectTimeoutError("connect timed out"),
    aiosmtplib.SMTPRecipientsRefused([]),                                          # no code: nothing to go by
    aiosmtplib.SMTPRecipientsRefused([R(450, "4.2.1 mailbox busy", "a@x.example")]),
    aiosmtplib.SMTPRecipientsRefused([R(550, "5.1.1 unknown", "a@x.example"),     # one may still take it
                                      R(451, "4.7.1 greylisted", "b@x.example")]),
    R(452, "4.2.2 mailbox full", "a@x.example"),
    aiosmtplib.SMTPDataError(451, "4.3.0 try again later"),
    aiosmtplib.SMTPResponseException(421, "4.3.2 shutting down"),
    # 5xx about the session, the same for every email: our configuration, not this message
    aiosmtplib.SMTPSenderRefused(550, "5.7.1 sender not allowed", "orders@salesbus.example"),
    aiosmtplib.SMTPHeloError(501, "5.5.4 bad EHLO"),
    aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"),
    aiosmtplib.SMTPConnectResponseError(554, "5.3.2 no service"),
])
def test_connection_faults_timeouts_4xx_and_session_refusals_are_for_now(error):
    assert sender.permanent_refusal(error) is None
    outcome = attempt_delivery(build_message(ROW, sender="o@x.example", date=T0), FlakyRelay(1, error), 0)
    assert (outcome.sent, outcome.permanent, outcome.retry_in_s) == (False, False, 1)


@pytest.mark.parametrize("recipient, reads_as", [
    ("a:b@example.com", "a: b@example.com;"),       # a group named "a" holding b@example.com
    ("a;b@example.com", "a"),                       # the local user "a" of the relay
    ("a,b@example.com", "a, b@example.com"),        # two recipients
    ("x<y@example.com", "x <y@example.com>"),       # display name x, mail to y
    ('x"y@example.com', '"xy@example.com"'),
])
def test_a_recipient_the_email_package_reads_otherwise_cannot_be_built(recipient, reads_as):
    with pytest.raises(ValueError, match="is not one plain email address") as raised:
        build_message({**ROW, "recipient": recipient}, sender="o@x.example", date=T0)
    assert repr(reads_as) in str(raised.value)


@pytest.mark.parametrize("recipient", ["ana@example.hr", "nabava+hr@primjer.example.hr", "ana.kovač@primjer.hr",
                                       "o'brien@example.ie"])
def test_plain_addresses_are_built_to_themselves(recipient):
    message = build_message({**ROW, "recipient": recipient}, sender="o@x.example", date=T0)
    assert [a.addr_spec for a in message["To"].addresses] == [recipient]


def test_a_subject_with_a_line_break_cannot_be_built():
    with pytest.raises(ValueError):
        build_message({**ROW, "subject": "Order\r\nBcc: everyone@example.com"}, sender="o@x.example", date=T0)


def test_an_unbuildable_row_is_set_aside_without_talking_to_the_relay(queue):
    queue["row"]["recipient"] = "a:b@example.com"
    sent = []
    worker = SenderWorker(transport=lambda m, r: sent.append(m))
    ctx = FakeCtx()
    outcome = worker.deliver_next(ctx)
    assert outcome.set_aside and not outcome.sent and sent == [] and ctx.uows[0].emitted == []
    [(kind, written)] = queue["writes"]
    assert kind == "set aside" and written["attempts"] == 1 and written["failed_at"] == T0
    assert written["reason"].startswith("the message cannot be built: ValueError: recipient 'a:b@example.com'")
    assert ctx.uows[0].conn.savepoints == 2          # the row's savepoint, and the mark's inside it
    assert worker.deliver_next(ctx) is None          # never taken again


def test_a_row_whose_announcement_would_be_invalid_is_set_aside_before_it_is_sent(queue):
    """Validating NotificationSent only after the relay accepted rolled the row back to pending:
    the same email went out on every attempt."""
    queue["row"]["language"] = "xx"
    sent = []
    outcome = SenderWorker(transport=lambda m, r: sent.append(m)).deliver_next(FakeCtx())
    assert outcome.set_aside and sent == []
    assert "ValidationError" in queue["writes"][0][1]["reason"]


def test_a_permanent_refusal_is_set_aside_with_the_relays_reply(queue):
    refusal = aiosmtplib.SMTPRecipientsRefused([R(550, "5.1.1 mailbox unavailable", ROW["recipient"])])
    worker = SenderWorker(transport=lambda m, r: FlakyRelay(1, refusal)(m))
    outcome = worker.deliver_next(FakeCtx())
    assert outcome.set_aside and outcome.code == 550
    [(kind, written)] = queue["writes"]
    assert kind == "set aside" and written["reason"].startswith("refused by relay.test:2525: SMTPRecipientsRefused")
    assert "5.1.1 mailbox unavailable" in written["reason"]


def test_failing_for_now_is_retried_within_the_window_and_given_up_after_it(queue):
    worker = SenderWorker(transport=lambda m, r: FlakyRelay(1)(m), retry_window_s=3600)
    queue["row"].update(attempts=7, failing_for_s=3599.0)
    within = worker.deliver_next(FakeCtx())
    assert not within.set_aside and queue["writes"][-1][0] == "failed"    # record_failure: pending, backoff
    queue["row"].update(attempts=8, failing_for_s=3601.0)
    beyond = worker.deliver_next(FakeCtx())
    assert beyond.set_aside
    kind, written = queue["writes"][-1]
    assert kind == "set aside" and written["attempts"] == 9
    assert written["reason"].startswith("gave up after 9 attempts over 1.0 h (retry window 1.0 h); last error: "
                                        "SMTPConnectError")


def test_the_window_comes_from_settings_by_default(queue):
    ctx = FakeCtx()
    assert ctx.settings.email_retry_window_s == 3 * 86400
    queue["row"].update(failing_for_s=3 * 86400 - 1.0)
    assert not SenderWorker(transport=lambda m, r: FlakyRelay(1)(m)).deliver_next(ctx).set_aside
    queue["row"].update(failing_for_s=3 * 86400 + 1.0)
    assert SenderWorker(transport=lambda m, r: FlakyRelay(1)(m)).deliver_next(ctx).set_aside


def test_a_bug_in_the_transport_delays_that_row_and_the_worker_goes_on(queue):
    worker = SenderWorker(transport=lambda m, r: FlakyRelay(1, KeyError("bug"))(m))
    outcome = worker.deliver_next(FakeCtx())
    assert not outcome.sent and not outcome.set_aside and outcome.retry_in_s == 1
    assert queue["writes"] == [("failed", {"attempts": 1, "error": outcome.error, "retry_in_s": 1})]
    assert outcome.error.startswith("unexpected KeyError")


def test_a_struggling_relay_is_a_stall_until_an_email_goes_out(queue):
    from runtime.containment import Stalls
    relay = FlakyRelay(failures=2)
    worker = SenderWorker(transport=lambda m, r: relay(m))
    ctx = FakeCtx()
    ctx.stalls = Stalls("notifications")
    assert worker.step(ctx) is False                       # refused: pause before the next email
    assert ctx.stalls.longest()[0] == "smtp relay"
    assert "SMTPConnectError" in ctx.stalls.longest()[2]
    assert worker.step(ctx) is False and ctx.stalls.longest()[0] == "smtp relay"
    assert worker.step(ctx) is True                        # accepted
    assert ctx.stalls.longest() is None


def test_the_worker_loop_survives_whatever_a_step_raises(queue, monkeypatch):
    """Before: anything but a database error escaped the loop and stopped the process."""
    calls = []

    def due(conn, limit):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return [dict(queue["row"])] if queue["row"]["attempts"] >= 0 else []
    monkeypatch.setattr(store, "due", due)
    ctx = FakeCtx()
    sent = []
    worker = SenderWorker(transport=lambda m, r: (sent.append(m), ctx.stopping.set()))
    t = threading.Thread(target=worker, args=(ctx,))
    t.start()
    t.join(10)
    assert not t.is_alive() and len(sent) == 1 and len(calls) >= 2


def test_an_invoice_email_carries_its_pdf_beside_the_text_and_html_parts():
    pdf = b"%PDF-1.4 invoice bytes %%EOF"
    message = build_message({**ROW, "attachment": pdf, "attachment_name": "INV-2026-000042.pdf"},
                            sender="orders@salesbus.example", date=T0)
    assert message.get_content_type() == "multipart/mixed"
    [attached] = list(message.iter_attachments())
    assert (attached.get_content_type(), attached.get_filename(), attached.get_content()) == \
        ("application/pdf", "INV-2026-000042.pdf", pdf)
    body = message.get_body(("html", "plain"))
    assert body is not None and message.get_body(("plain",)).get_content().strip()
    # without an attachment the message stays as it was
    assert build_message(ROW, sender="o@x.example", date=T0).get_content_type() == "multipart/alternative"


# --- several emails per transaction (issue 11: a commit per email capped the sender) -------------

@pytest.fixture
def five_due(monkeypatch):
    """Five pending rows in a fake store; what the worker writes back, by notification id."""
    rows = [{**ROW, "notification_id": f"n-{i}"} for i in range(5)]
    state = {"pending": list(rows), "writes": []}

    def due(conn, limit):
        return [dict(r) for r in state["pending"][:limit]]

    def write(kind):
        def record(conn, nid, **kw):
            state["writes"].append((kind, nid))
            state["pending"] = [r for r in state["pending"] if r["notification_id"] != nid]  # no longer due
        return record
    monkeypatch.setattr(store, "due", due)
    monkeypatch.setattr(store, "mark_sent", write("sent"))
    fake_mark_sent_many(monkeypatch)
    monkeypatch.setattr(store, "record_failure", write("retry"))
    monkeypatch.setattr(store, "mark_failed", write("set aside"))
    monkeypatch.setattr(store, "pending_backlog", lambda conn: (len(state["pending"]), 0.0))
    monkeypatch.setattr(store, "has_pending", lambda conn: bool(state["pending"]))
    return state


def test_one_transaction_carries_up_to_the_batch_size_and_announces_each_email(five_due):
    ctx = FakeCtx()
    ctx.settings = ctx.settings.model_copy(update={"email_batch_size": 3})
    sent = []
    worker = SenderWorker(transport=lambda m, r: sent.append(m["X-Salesbus-Notification-Id"]))
    assert worker.step(ctx) is True                     # three sent: more may be due
    assert sent == ["n-0", "n-1", "n-2"] and len(ctx.uows) == 2   # the backlog gauge's, then one for the three
    assert [e.notification_id for e, _ in ctx.uows[1].emitted] == ["n-0", "n-1", "n-2"]
    assert worker.step(ctx) is True and sent[3:] == ["n-3", "n-4"]
    assert [e.notification_id for e, _ in ctx.uows[2].emitted] == ["n-3", "n-4"]
    assert worker.step(ctx) is False                    # nothing left


def test_a_batch_stops_at_the_first_email_the_relay_does_not_take(five_due):
    ctx = FakeCtx()
    answers = iter([None, aiosmtplib.SMTPServerDisconnected("gone")])

    def transport(m, r):
        err = next(answers, None)
        if err is not None:
            raise err
    worker = SenderWorker(transport=transport)
    assert worker.step(ctx) is False                    # the relay failed: pause before the next
    assert five_due["writes"] == [("sent", "n-0"), ("retry", "n-1")]   # n-2.. untouched, still due
    assert [e.notification_id for e, _ in ctx.uows[-1].emitted] == ["n-0"]


def test_deliver_next_is_still_one_email_per_transaction(five_due):
    ctx = FakeCtx()
    outcome = SenderWorker(transport=lambda m, r: None).deliver_next(ctx)
    assert outcome.sent and five_due["writes"] == [("sent", "n-0")] and len(ctx.uows) == 1
