"""The sender's cheap headers (services/notifications/sender.py _PlainHeader) give the very bytes the
stdlib's parsed headers give, whatever a row holds: one message built both ways, compared byte for
byte. Why mime.plain_header is strict: the stdlib decodes an encoded-word lookalike in a Subject and writes
it back encoded, and its own Message-ID parser fails on ids ours would write as given (hypothesis
found "<:@x>"), so such headers stay the stdlib's."""
from __future__ import annotations

import email.policy
from datetime import datetime, timezone
from email.headerregistry import HeaderRegistry

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifications import sender as s

T0 = datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
STDLIB = email.policy.default.clone(max_line_length=998, header_factory=HeaderRegistry())
ROW = {"notification_id": "n-5f2c9e0a41b7", "recipient": "buyer@example.hr", "subject": "Order ORD-1 confirmed",
       "kind": "order_confirmed", "language": "en", "body_text": "Dear buyer,\nthank you.\n",
       "body_html": "<p>Dear buyer,</p>", "customer_id": "c-1", "order_id": "o-1", "attachment": None}


def flattened(row: dict, policy) -> bytes | str:
    """The message built under `policy` as it goes to the relay, or the name of what refused it."""
    saved = s._NO_FOLDING
    s._NO_FOLDING = policy
    try:
        msg = s.build_message(row, sender="orders@salesbus.example", date=T0)
        for n, part in enumerate(msg.walk()):
            if part.is_multipart():
                part.set_boundary(f"b{n}")   # the generator would draw a random one
        return msg.as_bytes(policy=policy.clone(linesep="\r\n"))
    except Exception as exc:  # noqa: BLE001 - a refused row must be refused both ways
        return type(exc).__name__
    finally:
        s._NO_FOLDING = saved


def outcome(row: dict) -> bytes | str:
    ours, theirs = flattened(row, s._NO_FOLDING), flattened(row, STDLIB)
    assert ours == theirs
    return ours


@pytest.mark.parametrize("subject", [
    "Order ORD-2026-000123 confirmed", "Narudžba potvrđena", "Quý khách đã đặt hàng " * 6,
    "=?utf-8?b?w6k=?= looks encoded", "two  spaces", " leading", "trailing ", "tab\there",
    "x" * 1200, "(comment) \"quoted\" <angle> ; , : @", "line\nbreak", "ends with newline\n", "",
])
def test_a_subject_gives_the_same_bytes_as_the_stdlib_headers(subject):
    outcome({**ROW, "subject": subject})


def test_the_plain_headers_are_the_ones_taken_without_parsing():
    msg = s.build_message(ROW, sender="orders@salesbus.example", date=T0)
    plain = {k.lower() for k, v in msg.items() if isinstance(v, s._PlainHeader)}
    assert {"subject", "x-salesbus-notification-id", "auto-submitted", "content-language"} <= plain
    assert not plain & {"from", "to", "content-type", "date", "message-id"}   # parsed by the stdlib
    assert msg["To"].addresses[0].addr_spec == "buyer@example.hr"


def test_an_invoice_with_its_pdf_gives_the_same_bytes():
    outcome({**ROW, "attachment": b"%PDF-1.4 fake", "attachment_name": "INV-7.pdf"})


@settings(max_examples=300, deadline=None)
@given(subject=st.text(max_size=120), kind=st.text(min_size=1, max_size=40),
       language=st.sampled_from(["en", "hr", "de", "fr", "vi", "x y", "en\r"]),
       notification_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60))
def test_any_row_gives_the_same_bytes_or_is_refused_both_ways(subject, kind, language, notification_id):
    outcome({**ROW, "subject": subject, "kind": kind, "language": language, "notification_id": notification_id})
