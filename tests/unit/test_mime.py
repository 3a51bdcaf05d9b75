"""The sender's direct writer (services/notifications/mime.py) against the stdlib: for any row it
either declines (None: the stdlib builds the row, or refuses it) or writes a message that the
stdlib's own parser reads exactly as it reads the message build_message makes — every header's
value, the parts' types, texts and attachment — except the Subject, which reads back exactly as
the row gives it (the stdlib's own drops a leading space). And the emails we really send take it."""
from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Delivery, Money, OrderConfirmed, OrderLine
from services.notifications import mime
from services.notifications import sender as s
from services.notifications.messages import MESSAGES
from services.notifications.templates import render

T0 = datetime(2026, 12, 4, 9, 30, tzinfo=timezone.utc)
SENDER = "orders@salesbus.example"
ROW = {"notification_id": "5f2c9e0a-41b7-5c1e-9d1a-0e6f3b2a7c11", "recipient": "buyer@example.hr",
       "subject": "Narudžba potvrđena – SB-00000001", "kind": "order_confirmation", "language": "hr",
       "body_text": "Dobar dan,\nhvala Vam na narudžbi.\n", "body_html": "<p>Dobar dan,</p>",
       "customer_id": "c-1", "order_id": "o-1", "attachment": None, "attachment_name": None}


def read(data: bytes) -> dict:
    """What a receiver's parser makes of a message: headers and parts, boundaries left out."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    parts = []
    for part in msg.walk():
        entry = {"type": part.get_content_type(), "params": {k: v for k, v in part["Content-Type"].params.items()
                                                              if k != "boundary"} if part["Content-Type"] else {},
                 "disposition": part.get_content_disposition(), "filename": part.get_filename(),
                 "defects": [type(d).__name__ for d in part.defects]}
        if not part.is_multipart():
            content = part.get_content()
            # Python reads quoted-printable's CRLF line ends as CRLF and base64's as they were encoded
            # (LF): the same lines for a receiver, and the stdlib picks either by which is shorter
            entry["content"] = content.replace("\r\n", "\n") if isinstance(content, str) else content
        parts.append(entry)
    headers = {k: str(v) for k, v in msg.items() if k.lower() != "content-type"}
    return {"headers": headers, "parts": parts, "defects": [type(d).__name__ for d in msg.defects]}


def stdlib_bytes(row: dict) -> bytes:
    return s.wire_bytes(s.build_message(row, sender=SENDER, date=T0))


def check(row: dict) -> bytes | None:
    ours = mime.wire(row, sender=SENDER, date=T0)
    if ours is not None:
        mine, theirs = read(ours), read(stdlib_bytes(row))   # the stdlib builds (does not refuse) what we write
        # the Subject reads back as given; the stdlib's own loses a leading space and joins folded words
        assert mine["headers"].pop("Subject") == row["subject"]
        theirs["headers"].pop("Subject")
        assert mine == theirs
        assert all(len(line) <= 998 for line in ours.split(b"\r\n"))
        head = ours.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert all(len(line) <= 76 for line in head if b"=?utf-8?" in line)   # RFC 2047's limit
        assert b"\n" not in ours.replace(b"\r\n", b"") and b"\r" not in ours.replace(b"\r\n", b"")
    return ours


@pytest.mark.parametrize("subject", [
    "Order confirmed – SB-1", "Order ORD-2026-000123 confirmed", "Quý khách đã đặt hàng " * 12,
    " leading", "trailing ", "two  spaces", "=?utf-8?b?w6k=?= looks encoded", "x" * 1200, "",
    "(comment) \"quoted\" <angle> ; , : @", "💡 " * 40,
])
def test_a_subject_reads_back_as_the_stdlibs(subject):
    assert check({**ROW, "subject": subject}) is not None


@pytest.mark.parametrize("row, why", [
    ({**ROW, "recipient": "a:b@example.com"}, "a group named a, holding b@example.com"),
    ({**ROW, "recipient": "x<y@example.com"}, "the stdlib reads y@example.com"),
    ({**ROW, "recipient": "Ana <a@example.com>"}, "a display name"),
    ({**ROW, "recipient": "a@localhost"}, "no dot in the domain: the stdlib's call"),
    ({**ROW, "subject": "line\nbreak"}, "a header with a line break"),
    ({**ROW, "subject": "tab\there"}, "a control character"),
    ({**ROW, "language": "en\r"}, "a header with a line break"),
    ({**ROW, "notification_id": "<:@x>"}, "not a Message-ID the stdlib parses"),
    ({**ROW, "body_html": "\ud800"}, "a lone surrogate"),
])
def test_a_row_outside_the_plain_shape_is_left_to_the_stdlib(row, why):
    assert mime.wire(row, sender=SENDER, date=T0) is None, why


@pytest.mark.parametrize("text", ["x" * 999, ("ž" * 700 + " \n") * 3, "a" * 5000 + "\r\n.\r\nend  ", "=3D" * 400])
def test_a_line_over_998_bytes_goes_quoted_printable_and_reads_back(text):
    data = check({**ROW, "body_text": text, "body_html": text})
    assert b"Content-Transfer-Encoding: quoted-printable" in data


def test_an_invoice_with_its_pdf_reads_back_as_the_stdlibs():
    pdf = bytes(range(256)) * 20
    data = check({**ROW, "attachment": pdf, "attachment_name": "INV-2026-000007.pdf"})
    parts = read(data)["parts"]
    assert [p["type"] for p in parts] == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html",
                                          "application/pdf"]
    assert parts[-1]["content"] == pdf and parts[-1]["filename"] == "INV-2026-000007.pdf"


def confirmation(language: str) -> OrderConfirmed:
    eur = lambda a: Money(amount=Decimal(a), currency="EUR")  # noqa: E731
    return OrderConfirmed(
        order_id="o-1", customer_id="c-1", confirmation_number="SB-00000001",
        lines=[OrderLine(sku="BULB-LED-9W", name="LED bulb 9 W", quantity=1000, unit_price=eur("1.85"))],
        total=eur("1850.00"), language=language,
        delivery=Delivery(recipient="Ana Kovač", address_lines=["Ilica 1"], city="Zagreb", postal_code="10000",
                          country="HR", phone="+385 1 555", email="buyer@example.hr"),
        confirmed_at=T0)


@pytest.mark.parametrize("language", sorted(MESSAGES))
def test_the_confirmations_we_send_take_the_direct_writer(language):
    """Regression guard for the speed-up itself: a rendered confirmation in every language is of
    the plain shape (it declined them all when the HTML's table line was over 998 bytes)."""
    rendered = render(confirmation(language), language, extra={"time_zone": "Europe/Zagreb"})
    row = {**ROW, "language": language, "subject": rendered.subject, "body_text": rendered.text,
           "body_html": rendered.html}
    assert check(row) is not None


_ATEXT = st.sampled_from("abcXYZ019!#$%&'*+/^_`{|}~-")
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
plain_addresses = st.builds(lambda local, labels: ".".join(local) + "@" + ".".join(labels),
                            st.lists(st.text(_ATEXT, min_size=1, max_size=8), min_size=1, max_size=3),
                            st.lists(_LABEL, min_size=2, max_size=3))


@settings(max_examples=400, deadline=None)
@given(recipient=st.one_of(plain_addresses, st.text(max_size=40)),
       subject=st.text(max_size=150),
       body_text=st.text(max_size=300), body_html=st.text(max_size=300),
       kind=st.one_of(st.just("order_confirmation"), st.text(max_size=20)),
       language=st.sampled_from(["en", "hr", "pt-BR", "x y", "en\r", ""]),
       notification_id=st.one_of(st.uuids().map(str), st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                               min_size=1, max_size=40)),
       attachment=st.one_of(st.none(), st.binary(max_size=200)),
       attachment_name=st.one_of(st.none(), st.just("INV-1.pdf"), st.text(max_size=20)))
def test_any_row_is_written_as_the_stdlib_reads_it_or_left_to_the_stdlib(
        recipient, subject, body_text, body_html, kind, language, notification_id, attachment, attachment_name):
    check({**ROW, "recipient": recipient, "subject": subject, "body_text": body_text, "body_html": body_html,
           "kind": kind, "language": language, "notification_id": notification_id, "attachment": attachment,
           "attachment_name": attachment_name})


@settings(max_examples=200, deadline=None)
@given(recipient=plain_addresses)
def test_every_plain_address_is_written_directly(recipient):
    """The address pattern is not so strict that the direct writer never runs for real addresses."""
    assert check({**ROW, "recipient": recipient}) is not None
