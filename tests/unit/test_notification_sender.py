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


class FakeUow:
    def __init__(self):
        self.conn, self.emitted = object(), []

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


@pytest.fixture
def queue(monkeypatch):
    """One pending row in a fake store; records what the worker writes back."""
    state = {"row": dict(ROW), "writes": []}
    monkeypatch.setattr(store, "next_due", lambda conn: dict(state["row"]) if state["row"]["attempts"] >= 0 else None)
    monkeypatch.setattr(store, "mark_sent", lambda conn, nid, **kw: (state["writes"].append(("sent", kw)),
                                                                     state["row"].update(attempts=-1)))

    def failed(conn, nid, **kw):
        state["writes"].append(("failed", kw))
        state["row"]["attempts"] = kw["attempts"]
    monkeypatch.setattr(store, "record_failure", failed)
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
