"""The analysts' tools against the real broker: `salesbus export` writes one flat, typed table per
event type that pandas opens with the right dtypes (times datetime64[us, UTC], money Decimal,
quantities int), and `salesbus tap` filters by event time and payload fields and summarises."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.export import columns_of, read_csv, tables_for
from schemas import REGISTRY

pytestmark = pytest.mark.integration
AT = "2026-02-02T09:30:00Z"
DELIVERY = {"recipient": "Goods in", "address_lines": ["Obala 1", "Gate 3"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"}
LINE = {"sku": "BULB-60W", "name": "Bulb", "quantity": 2, "unit_price": {"amount": "1.50", "currency": "EUR"}}
SO = {"lines": [{"sku": "BULB-60W", "quantity": 24}], "delivery": DELIVERY, "payment": {"mode": "account"},
      "interval": {"every": 2, "unit": "weeks"}, "start_date": "2026-03-02", "time_zone": "Europe/Zagreb"}


def samples(u: str) -> dict[str, dict]:
    """One valid payload of every event type, ids marked with u."""
    order = {"order_id": f"o-{u}", "customer_id": f"c-{u}"}
    return {
        "OrderPlaced": {**order, "lines": [LINE, {**LINE, "sku": "CABLE-3M", "quantity": 1}],
                        "total": {"amount": "4.50", "currency": "EUR"}, "delivery": DELIVERY,
                        "payment": {"mode": "card", "card_token": "tok_visa_approved"}, "placed_at": AT,
                        "occurrence": 3, "standing_order_id": f"so-{u}"},
        "PaymentVerified": {**order, "amount": {"amount": "4.50", "currency": "EUR"}, "method": "card",
                            "charge_reference": "auth-1", "verified_at": AT},
        "PaymentDeclined": {**order, "method": "account", "reason_code": "credit_limit_exceeded", "message": "over",
                            "declined_at": AT},
        "OrderConfirmed": {**order, "confirmation_number": "SB-7K3M-9QXD", "lines": [LINE],
                           "total": {"amount": "3.00", "currency": "EUR"}, "delivery": DELIVERY, "confirmed_at": AT},
        "OrderShipped": {"order_id": f"o-{u}", "carrier": "DPD", "tracking_number": "T1", "distribution_centre": "DC",
                         "shipped_at": AT},
        "OrderCancelled": {**order, "reason": "customer request", "cancelled_at": AT},
        "ProductChanged": {"sku": f"P-{u.upper()}", "name": "Bulb", "unit_price": {"amount": "1.50", "currency": "EUR"},
                           "active": True, "changed_at": AT},
        "SupplierAccountChanged": {"customer_id": f"c-{u}", "credit_limit": "5000.00", "open_balance": "120.50",
                                   "currency": "EUR", "payment_terms_days": 30, "status": "active", "changed_at": AT},
        "NotificationSent": {"notification_id": f"n-{u}", "customer_id": f"c-{u}", "order_id": f"o-{u}",
                             "kind": "order_confirmation", "recipient": "buyer@example.hr", "subject": "Thanks",
                             "language": "hr", "sent_at": AT},
        "ContactLogged": {"entry_id": f"e-{u}", "customer_id": f"c-{u}", "channel": "phone_call", "occurred_at": AT},
        "TaskChanged": {"task_id": f"t-{u}", "customer_id": f"c-{u}", "salesperson_id": "sp-1", "kind": "custom",
                        "status": "open", "due_at": AT, "title": "Call", "change": "created", "changed_at": AT},
        "ReminderDue": {"task_id": f"t-{u}", "reminder_id": f"r-{u}", "customer_id": f"c-{u}", "customer_name": "Ana",
                        "salesperson_id": "sp-1", "salesperson_email": "sp@example.hr", "title": "Call",
                        "due_at": AT},
        "StandingOrderRequested": {"standing_order_id": f"so-{u}", "customer_id": f"c-{u}", **SO,
                                   "requested_at": AT},
        "StandingOrderChanged": {"standing_order_id": f"so-{u}", "customer_id": f"c-{u}", **SO, "change": "created",
                                 "status": "active", "skip_occurrences": [4], "changed_at": AT},
        "RecurringOrderDue": {"standing_order_id": f"so-{u}", "occurrence": 1, "due_at": AT, "customer_id": f"c-{u}",
                              "lines": SO["lines"], "delivery": DELIVERY, "payment": {"mode": "account"}},
        "StandingOrderOccurrenceFailed": {"standing_order_id": f"so-{u}", "occurrence": 2, "customer_id": f"c-{u}",
                                          "reason": "inactive product", "delivery": DELIVERY, "failed_at": AT},
        "TimerRequested": {"timer_id": f"tm-{u}", "owner": "crm", "kind": "reminder", "fire_at": AT,
                           "payload": {"task_id": f"t-{u}"}},
        "TimerCancelled": {"timer_id": f"tm-{u}", "owner": "crm"},
        "TimerFired": {"timer_id": f"tm-{u}", "owner": "crm", "kind": "reminder", "fire_at": AT, "fired_at": AT},
        "InvoiceIssued": {"invoice_number": "INV-2026-000001", "customer_id": f"c-{u}", "order_id": f"o-{u}",
                          "lines": [LINE], "tax_total": {"amount": "0.00", "currency": "EUR"},
                          "total": {"amount": "3.00", "currency": "EUR"}, "issue_date": "2026-03-01",
                          "due_date": "2026-03-31", "time_zone": "Europe/Zagreb", "billing_email": "ap@example.hr",
                          "issued_at": AT},
        "PaymentReceived": {"payer_reference": f"bank-{u}", "customer_id": f"c-{u}",
                            "amount": {"amount": "3.00", "currency": "EUR"}, "received_on": "2026-03-05",
                            "invoice_numbers": ["INV-2026-000001"]},
        "CreditNoteIssued": {"credit_note_number": "CN-2026-000001", "customer_id": f"c-{u}", "order_id": f"o-{u}",
                             "invoice_number": "INV-2026-000001", "amount": {"amount": "3.00", "currency": "EUR"},
                             "reason": "customer request", "issue_date": "2026-03-02", "issued_at": AT},
        "OrderRefunded": {**order, "method": "account", "amount": {"amount": "3.00", "currency": "EUR"},
                          "refund_reference": "CN-2026-000001", "refunded_at": AT},
        "InvoiceOverdue": {"invoice_number": "INV-2026-000001", "customer_id": f"c-{u}", "step_days": 3,
                           "days_overdue": 4, "open_amount": {"amount": "3.00", "currency": "EUR"},
                           "due_date": "2026-03-31", "noticed_at": AT},
    }


@pytest.fixture
def cli(cfg, monkeypatch):
    monkeypatch.setenv("SALESBUS_KAFKA_BOOTSTRAP", cfg.kafka_bootstrap)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output
    return invoke


def check_dtypes(df: pd.DataFrame, table) -> None:
    for col in table.columns:
        s, where = df[col.name], f"{table.name}.{col.name}"
        if col.kind == "timestamp":
            assert str(s.dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]"), (where, s.dtype)
        elif col.kind == "decimal":
            assert s.dtype == object and all(isinstance(v, Decimal) for v in s.dropna()), where
        elif col.kind == "int":
            assert pd.api.types.is_integer_dtype(s.dtype), (where, s.dtype)
        elif col.kind == "bool":
            assert pd.api.types.is_bool_dtype(s.dtype), (where, s.dtype)


def test_every_event_type_exports_to_parquet_and_csv_that_pandas_reads_typed(bus, cli, unique, tmp_path):
    published = {etype: bus.publish(REGISTRY[etype].model_validate(payload)) for etype, payload in samples(unique).items()}
    assert set(published) == set(REGISTRY), "every event type has a sample"
    out = tmp_path / "all.parquet"
    printed = cli("export", *REGISTRY, "--out", str(out), "--since", "1h")
    for etype, event_id in published.items():
        for table in tables_for(etype):
            path = out.with_name(f"all-{table.name}.parquet")
            assert str(path) in printed
            df = pd.read_parquet(path)
            assert list(df.columns) == [c.name for c in table.columns]
            check_dtypes(df, table)
            assert event_id in set(df["event_id"]), f"{table.name} lacks the published event"

    placed = pd.read_parquet(tmp_path / "all-OrderPlaced.parquet").set_index("event_id").loc[published["OrderPlaced"]]
    assert placed["total.amount"] == Decimal("4.50") and placed["occurrence"] == 3
    assert placed["placed_at"] == pd.Timestamp(AT) and placed["delivery.city"] == "Split"
    assert placed["delivery.country"] == "HR"  # region stays; the person and address do not (below)
    lines = pd.read_parquet(tmp_path / "all-OrderPlaced.lines.parquet")
    mine = lines[lines["event_id"] == published["OrderPlaced"]].sort_values("index")
    assert list(mine["sku"]) == ["BULB-60W", "CABLE-3M"] and list(mine["quantity"]) == [2, 1]
    assert str(lines["quantity"].dtype) == "int64" and mine["unit_price.amount"].iloc[0] == Decimal("1.50")
    account = pd.read_parquet(tmp_path / "all-SupplierAccountChanged.parquet")
    assert account.set_index("event_id").loc[published["SupplierAccountChanged"], "open_balance"] == Decimal("120.50")

    csv_out = tmp_path / "orders.csv"
    cli("export", "OrderPlaced", "--out", str(csv_out), "--where", f"customer_id=c-{unique}")
    for table in tables_for("OrderPlaced"):
        from_csv = read_csv(csv_out if "." not in table.name else tmp_path / "orders.lines.csv")
        check_dtypes(from_csv, table)
        from_parquet = pd.read_parquet(tmp_path / f"all-{table.name}.parquet")
        from_parquet = from_parquet[from_parquet["event_id"] == published["OrderPlaced"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
        assert len(from_csv) == len(from_parquet) > 0


PERSONAL = ("+385 21 000", "buyer@example.hr", "Obala 1", "ap@example.hr", "sp@example.hr")


def _contents(tmp_path, stem: str, fmt: str) -> dict[str, str]:
    """Each data file's column names and values as text (Parquet read back: its bytes are compressed)."""
    files = [p for p in tmp_path.glob(f"{stem}*.{fmt}")]
    return {p.name: pd.read_parquet(p).to_csv() if fmt == "parquet" else p.read_text() for p in files}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_exports_leave_out_card_tokens_always_and_contact_data_unless_asked(bus, cli, unique, tmp_path, fmt):
    """Before: `salesbus export` wrote card tokens, delivery e-mail and phone into analysts' files."""
    for etype, payload in samples(unique).items():
        bus.publish(REGISTRY[etype].model_validate(payload))
    topics = ["OrderPlaced", "StandingOrderRequested", "InvoiceIssued", "ReminderDue", "ContactLogged"]
    printed = cli("export", *topics, "--out", str(tmp_path / f"safe.{fmt}"), "--since", "1h")
    assert "card tokens left out (always); personal contact data left out (" in printed.splitlines()[-1]
    assert "delivery.phone" in printed.splitlines()[-1] and "--include-contact-data" in printed.splitlines()[-1]
    safe = _contents(tmp_path, "safe", fmt)
    assert len(safe) >= len(topics) and "Split" in safe[f"safe-OrderPlaced.{fmt}"]
    for name, body in safe.items():
        for secret in ("tok_visa_approved", "card_token", *PERSONAL, "delivery.email", "delivery.recipient", "customer_name"):
            assert secret not in body, f"{name} holds {secret}"
    mine = pd.read_parquet(tmp_path / "safe-OrderPlaced.parquet") if fmt == "parquet" else None
    if mine is not None:
        assert {"delivery.city", "delivery.country", "payment.mode"} <= set(mine.columns)
        import pyarrow.parquet as pq
        note = pq.read_schema(tmp_path / "safe-OrderPlaced.parquet").metadata[b"salesbus.left_out"].decode()
        assert note.startswith("card tokens left out (always); personal contact data left out")
    else:
        sidecar = json.loads((tmp_path / f"safe-OrderPlaced.{fmt}.schema.json").read_text())
        assert "personal contact data left out" in sidecar["description"]

    printed = cli("export", *topics, "--out", str(tmp_path / f"full.{fmt}"), "--since", "1h", "--include-contact-data")
    assert "personal contact data INCLUDED (--include-contact-data)" in printed.splitlines()[-1]
    full = "".join(_contents(tmp_path, "full", fmt).values())
    for value in PERSONAL:
        assert value in full, f"--include-contact-data lost {value}"
    assert "tok_visa_approved" not in full and "card_token" not in full, "a card token is never exported"


def test_jsonl_export_is_one_flat_object_per_event_filtered_by_time(bus, cli, unique, tmp_path):
    event_id = bus.publish(REGISTRY["PaymentVerified"].model_validate(samples(unique)["PaymentVerified"]))
    out = tmp_path / "paid.jsonl"
    now = datetime.now(UTC)
    cli("export", "PaymentVerified", "--out", str(out), "--since", (now - timedelta(minutes=5)).isoformat())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    [mine] = [r for r in rows if r["event_id"] == event_id]
    assert mine["amount.amount"] == "4.50" and mine["verified_at"] == AT and mine["order_id"] == f"o-{unique}"
    cli("export", "PaymentVerified", "--out", str(out), "--until", (now - timedelta(minutes=5)).isoformat())
    assert event_id not in out.read_text(), "--until leaves out later events"


def test_tap_filters_by_payload_field_and_summarises_per_type_and_key(bus, cli, unique):
    card = samples(unique)["OrderPlaced"]
    account = {**card, "order_id": f"o-{unique}-acct", "payment": {"mode": "account"}}
    for payload in (card, account):
        bus.publish(REGISTRY["OrderPlaced"].model_validate(payload))
    printed = cli("tap", "OrderPlaced", "--no-follow", "--json", "--where", f"customer_id=c-{unique}",
                  "--where", "payment.mode=account")
    assert [json.loads(line)["key"] for line in printed.splitlines()] == [f"o-{unique}-acct"]
    by_sku = cli("tap", "OrderPlaced", "--no-follow", "--json", "--where", "lines.sku=CABLE-3M",
                 "--where", f"customer_id=c-{unique}")
    assert len(by_sku.splitlines()) == 2, "a name through a list matches any element"
    summary = json.loads(cli("tap", "OrderPlaced", "--summary", "--json", "--since", "10m",
                             "--where", f"customer_id=c-{unique}"))
    assert summary["types"]["OrderPlaced"]["records"] == 2
    assert {(k["key"], k["records"]) for k in summary["keys"]} == {(f"o-{unique}", 1), (f"o-{unique}-acct", 1)}
    assert "records per type" in cli("tap", "OrderPlaced", "--summary", "--where", f"customer_id=c-{unique}")


def test_export_refuses_what_is_not_an_event_topic(cli, tmp_path):
    result = CliRunner().invoke(app, ["export", "OrderPlaced.DLQ", "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "not event topics" in result.output
    assert [c.name for c in columns_of(REGISTRY["OrderShipped"])][:2] == ["order_id", "customer_id"]
