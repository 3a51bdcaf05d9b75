"""Pure containment logic: decoding any bytes, classifying failures, storable reasons."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
import pytest

from runtime.containment import Fault, Stalls, classify, storable
from runtime.dead_letters import dead_letter_row
from runtime.errors import Rejected, TransientError
from runtime.record import MAX_ID, Record, decode
from schemas import OrderCancelled, envelope


def good_value(**overrides) -> bytes:
    ev = OrderCancelled(order_id="o-1", customer_id="c-1", reason="test",
                        cancelled_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    raw = json.loads(envelope(ev, source="upstream", event_id="ev-1").model_dump_json())
    raw.update(overrides)
    return json.dumps(raw).encode()


def rec(value, key=b"k", headers=()) -> Record:
    return Record("OrderCancelled", 0, 7, key, value, tuple(headers))


def test_a_good_record_decodes_with_source_and_id_as_its_identity():
    d = decode(rec(good_value()))
    assert d.error is None and d.identity == ("upstream", "ev-1") and d.group_key == "k"


@pytest.mark.parametrize("label, value", [
    ("nesting bomb", b"[" * 100_000),
    ("deep but parseable", json.dumps({"id": "x", "data": json.loads("[" * 200 + "]" * 200)}).encode()),
    ("5000-digit number", b'{"id": "x", "n": ' + b"9" * 5000 + b"}"),
    ("NaN", b'{"id": "x", "n": NaN}'),
    ("id object", good_value(id={"a": 1})),
    ("id integer", good_value(id=12345)),
    ("id with NUL", good_value(id="a\u0000b")),
    ("id with lone surrogate", good_value(id="a\ud800")),
    ("id too long", good_value(id="x" * (MAX_ID + 1))),
    ("NUL in a field name", good_value(data={"a\u0000": 1})),
    ("NUL in a value", good_value(subject="x\u0000")),
    ("not JSON", b"\xff\xfe"),
    ("tombstone", None),
    ("wrong topic", good_value(type="OrderPlaced")),
])
def test_whatever_the_bytes_decode_gives_a_reason_never_an_exception(label, value):
    d = decode(rec(value))
    assert d.error is not None, label
    assert storable(d.error) == str(d.error).replace("\x00", "\\0") or len(str(d.error)) > 1000
    assert d.event_id and "\x00" not in d.event_id and d.event_id.isprintable()


def test_a_record_without_a_usable_id_is_identified_by_its_position():
    assert decode(rec(good_value(id=12345))).identity == ("record", "OrderCancelled:0:7")
    # with a usable id the inbox still recognises a redelivery of the same bad record
    assert decode(rec(good_value(data={"bad": 1}))).identity == ("upstream", "ev-1")


def test_a_redrive_header_names_the_group():
    d = decode(rec(good_value(), headers=[("salesbus.redrive.group", b"payments")]))
    assert d.redrive_group == "payments" and d.error is None


def test_storable_removes_nul_and_surrogates_and_bounds_length():
    assert storable("a\x00b") == "a\\0b"
    assert storable("x\ud800y").encode("utf-8")
    assert storable(b"\xff\x00") == "\ufffd\\0"
    assert len(storable("x" * 5000, 100)) == 100


def test_a_dead_letter_is_storable_whatever_the_record_carried():
    r = Record("OrderPlaced", 1, 2, b"k\x00ey", b"[[[", (("h\x00", b"v\x00\xff"), ("n", None)))
    row = dead_letter_row(r, ValueError("bad \x00 \ud800"), "probe", "record:OrderPlaced:1:2")
    for text in [row.key, row.event_id, *row.headers, *row.headers.values()]:
        assert "\x00" not in text
        text.encode("utf-8")
    json.dumps(row.headers)
    assert row.topic == "OrderPlaced.DLQ" and row.value == b"[[["
    assert row.headers["__connect.errors.exception.class.name"] == "ValueError"


def pg_error(sqlstate: str) -> psycopg.Error:
    return psycopg.errors.lookup(sqlstate)("x")


@pytest.mark.parametrize("sqlstate, fault", [
    ("08006", Fault.ENVIRONMENT),   # connection failure
    ("57P01", Fault.ENVIRONMENT),   # admin shutdown
    ("53300", Fault.ENVIRONMENT),   # too many connections
    ("40001", Fault.ITEM),          # serialization failure
    ("40P01", Fault.ITEM),          # deadlock
    ("55P03", Fault.ITEM),          # lock not available
    ("57014", Fault.ITEM),          # query cancelled (statement timeout)
    ("54000", Fault.PERMANENT),     # program limit: index row size exceeds btree maximum
    ("22021", Fault.PERMANENT),     # invalid byte sequence
    ("23505", Fault.PERMANENT),     # unique violation
    ("42601", Fault.PERMANENT),     # syntax error
    ("22003", Fault.PERMANENT),     # numeric value out of range
])
def test_database_errors_are_classified_by_sqlstate(sqlstate, fault):
    assert classify(pg_error(sqlstate)) is fault


def test_other_failures_are_classified():
    assert classify(TransientError("gateway timeout")) is Fault.ITEM
    assert classify(Rejected("unknown customer")) is Fault.PERMANENT
    assert classify(KeyError("bug")) is Fault.PERMANENT
    assert classify(psycopg.OperationalError("connection refused")) is Fault.ENVIRONMENT


def test_stalls_report_the_longest_and_clear():
    stalls = Stalls("svc")
    stalls.retrying("consumer", "database away \x00")
    loop, seconds, reason = stalls.longest()
    assert loop == "consumer" and seconds >= 0 and "\x00" not in reason
    stalls.flowing("consumer")
    assert stalls.longest() is None
