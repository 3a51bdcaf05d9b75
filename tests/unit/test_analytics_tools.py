"""The analysts' tools without a broker: time and payload filters of `salesbus tap`, its summary,
and the flat typed tables of `salesbus export` written and read back in every format."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from runtime.export import export, file_for, read_csv, tables_for
from runtime.tap import Tapped, Where, parse_when, summarize
from schemas import REGISTRY, OrderPlaced, envelope, to_record

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
ORDER = {"order_id": "o-1", "customer_id": "c-1",
         "lines": [{"sku": "BULB-60W", "name": "Bulb", "quantity": 3, "unit_price": {"amount": "0.125", "currency": "EUR"}}],
         "total": {"amount": "0.38", "currency": "EUR"},
         "delivery": {"recipient": "Stores", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
                      "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"},
         "payment": {"mode": "account"}, "placed_at": "2026-03-02T08:00:00Z"}


def tapped(payload: dict, topic="OrderPlaced", offset=0, time=NOW) -> Tapped:
    key, value, headers = to_record(envelope(REGISTRY[topic].model_validate(payload), source="test", time=time))
    return Tapped(topic, 0, offset, key, headers, value, int(time.timestamp() * 1000))


@pytest.mark.parametrize("text, expected", [
    ("2h", NOW - timedelta(hours=2)), ("90s", NOW - timedelta(seconds=90)), ("7d", NOW - timedelta(days=7)),
    ("1.5w", NOW - timedelta(weeks=1.5)), ("now", NOW), ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ("2026-03-01T09:00:00+02:00", datetime(2026, 3, 1, 7, tzinfo=UTC)), ("2026-03-01T09:00:00Z", datetime(2026, 3, 1, 9, tzinfo=UTC)),
])
def test_times_are_rfc3339_or_relative(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-03-01T09:00", "5y"])
def test_ambiguous_or_unknown_times_are_refused(text):
    with pytest.raises(ValueError):
        parse_when(text, NOW)


def test_where_follows_dotted_paths_through_objects_and_lists():
    data = OrderPlaced.model_validate(ORDER).model_dump(mode="json")
    assert Where.parse("payment.mode=account").matches(data)
    assert not Where.parse("payment.mode=card").matches(data)
    assert Where.parse("payment.mode!=card").matches(data)
    assert Where.parse("lines.sku=BULB-60W").matches(data) and Where.parse("lines.0.quantity=3").matches(data)
    assert not Where.parse("lines.1.sku=BULB-60W").matches(data)
    assert Where.parse("standing_order_id=null").matches(data) and not Where.parse("nope.deeper=x").matches(data)
    with pytest.raises(ValueError):
        Where.parse("payment.mode")


def test_summary_counts_per_type_and_key_with_the_time_span():
    recs = [tapped({**ORDER, "order_id": oid}, offset=i, time=NOW + timedelta(minutes=i))
            for i, oid in enumerate(["o-1", "o-2", "o-1"])]
    found = summarize(recs)
    assert found["types"]["OrderPlaced"] == {"records": 3, "keys": 2, "first": NOW.isoformat(),
                                             "last": (NOW + timedelta(minutes=2)).isoformat()}
    assert found["keys"][0] == {"type": "OrderPlaced", "key": "o-1", "records": 2}


def test_every_event_type_flattens_to_uniquely_named_typed_columns():
    kinds = {}
    for etype in REGISTRY:
        for table in tables_for(etype):  # raises when a payload field collides with an envelope column
            kinds.update({(table.name, c.name): (c.kind, c.nullable) for c in table.columns})
    assert kinds[("OrderPlaced", "total.amount")] == ("decimal", False)
    assert kinds[("OrderPlaced", "placed_at")] == ("timestamp", False)
    assert kinds[("OrderPlaced", "occurrence")] == ("int", True)
    assert kinds[("OrderPlaced", "lines")] == ("json", False)
    assert kinds[("OrderPlaced.lines", "quantity")] == ("int", False)
    assert kinds[("StandingOrderChanged", "interval.every")] == ("int", False)
    assert kinds[("StandingOrderChanged", "start_date")] == ("date", False)
    assert kinds[("SupplierAccountChanged", "credit_limit")] == ("decimal", False)
    assert kinds[("ProductChanged", "active")] == ("bool", False)


def test_files_are_named_per_type_and_per_list_field():
    out = Path("/x/orders.parquet")
    assert file_for(out, "OrderPlaced", False) == out
    assert file_for(out, "OrderPlaced.lines", False) == Path("/x/orders.lines.parquet")
    assert file_for(out, "OrderPlaced", True) == Path("/x/orders-OrderPlaced.parquet")
    assert file_for(out, "OrderPlaced.lines", True) == Path("/x/orders-OrderPlaced.lines.parquet")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_writes_exact_money_and_utc_times_and_skips_what_is_not_an_event(tmp_path, fmt):
    bad = Tapped("OrderPlaced", 0, 9, "x", {}, b"not json", 0)
    result = export([tapped(ORDER), bad], ["OrderPlaced"], tmp_path / f"o.{fmt}", fmt)
    assert result.skipped == 1 and result.files == {tmp_path / f"o.{fmt}": 1, tmp_path / f"o.lines.{fmt}": 1}
    if fmt == "jsonl":
        [row] = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
        assert row["total.amount"] == "0.38" and row["placed_at"] == "2026-03-02T08:00:00Z"
        return
    read = pd.read_parquet if fmt == "parquet" else read_csv
    orders, lines = read(tmp_path / f"o.{fmt}"), read(tmp_path / f"o.lines.{fmt}")
    assert orders["total.amount"][0] == Decimal("0.38") and str(orders["placed_at"].dtype) == "datetime64[us, UTC]"
    assert orders["placed_at"][0] == pd.Timestamp("2026-03-02T08:00:00Z") and orders["event_key"][0] == "o-1"
    assert lines["unit_price.amount"][0] == Decimal("0.125"), "a price with three places keeps them"
    assert str(lines["quantity"].dtype) == "int64" and lines["quantity"][0] == 3
    assert str(orders["occurrence"].dtype) == "Int64" and orders["occurrence"].isna().all()
