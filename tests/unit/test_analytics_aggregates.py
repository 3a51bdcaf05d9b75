"""The analytics figures from facts (pure): windows, exact money, funnel rates, nearest-rank
percentiles, standing-order projections, cadence, and idempotent fact writes."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from schemas import (OrderConfirmed, OrderPlaced, OrderShipped, PaymentDeclined, PaymentVerified,
                     StandingOrderChanged)
from services.analytics import aggregates as agg
from services.analytics.facts import TABLES, fact_of, merged

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
DELIVERY = {"recipient": "Stores", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"}


def placed(oid, customer="c-1", at=T0, lines=(("BULB-60W", 3, "0.10"),), currency="EUR"):
    items = [{"sku": s, "name": s, "quantity": q, "unit_price": {"amount": p, "currency": currency}} for s, q, p in lines]
    total = sum(Decimal(p) * q for _, q, p in lines)
    return OrderPlaced.model_validate({"order_id": oid, "customer_id": customer, "lines": items,
                                       "total": {"amount": str(total), "currency": currency}, "delivery": DELIVERY,
                                       "payment": {"mode": "account"}, "placed_at": at})


def confirmed(p: OrderPlaced, after=timedelta(seconds=30)):
    return OrderConfirmed(order_id=p.order_id, customer_id=p.customer_id, confirmation_number="SB-1", lines=p.lines,
                          total=p.total, delivery=p.delivery, confirmed_at=p.placed_at + after)


def verified(p, after=timedelta(seconds=10)):
    return PaymentVerified(order_id=p.order_id, customer_id=p.customer_id, amount=p.total, method="account",
                           charge_reference="x", verified_at=p.placed_at + after)


def declined(p, reason="insufficient_funds"):
    return PaymentDeclined(order_id=p.order_id, customer_id=p.customer_id, method="account", reason_code=reason,
                           message="no", declined_at=p.placed_at)


def shipped(p, after):
    return OrderShipped(order_id=p.order_id, carrier="DPD", tracking_number="1", distribution_centre="DC",
                        shipped_at=p.placed_at + after)


def standing(soid="so-1", status="active", lines=(("BULB-60W", 10),), every=1, unit="weeks", start=date(2026, 3, 3),
             changed=T0, skip=(), **kw):
    return StandingOrderChanged.model_validate({
        "standing_order_id": soid, "customer_id": "c-1", "change": "created", "status": status,
        "lines": [{"sku": s, "quantity": q} for s, q in lines], "delivery": DELIVERY, "payment": {"mode": "account"},
        "interval": {"every": every, "unit": unit}, "start_date": start, "time_zone": "UTC", "changed_at": changed,
        "skip_occurrences": list(skip), **kw})


def apply(*events) -> dict:
    facts = {t: {} for t in TABLES}
    for ev in events:
        table, key, fact = fact_of(ev)
        value = merged(table, facts[table].get(key), fact)
        if value is not None:
            facts[table][key] = value
    return facts


def test_windows_are_tumbling_utc_hours_and_days_in_event_time():
    at = datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC)
    assert agg.window_start(at, agg.WINDOWS["hour"]) == datetime(2026, 3, 2, 23, tzinfo=UTC)
    assert agg.window_start(at, agg.WINDOWS["day"]) == datetime(2026, 3, 2, tzinfo=UTC)
    assert agg.window_start(at + timedelta(microseconds=1), agg.WINDOWS["day"]) == datetime(2026, 3, 3, tzinfo=UTC)


def test_revenue_is_exact_decimal_per_window_sku_and_currency():
    a = placed("o-1", lines=(("BULB-60W", 3, "0.10"), ("CABLE-3M", 1, "0.20")))
    b = placed("o-2", at=T0 + timedelta(minutes=50), lines=(("BULB-60W", 7, "0.10"),))
    c = placed("o-3", lines=(("BULB-60W", 1, "9.99"),), currency="PLN")
    facts = apply(a, b, c, confirmed(a), confirmed(b), confirmed(c), placed("o-4"))  # o-4 never confirmed
    hourly = agg.revenue(facts, "hour")
    rows = {(r["window_start"], r["sku"], r["currency"]): (r["orders"], r["units"], r["revenue"]) for r in hourly["rows"]}
    assert rows == {("2026-03-02T09:00:00Z", "BULB-60W", "EUR"): (1, 3, "0.30"),
                    ("2026-03-02T09:00:00Z", "CABLE-3M", "EUR"): (1, 1, "0.20"),
                    ("2026-03-02T10:00:00Z", "BULB-60W", "EUR"): (1, 7, "0.70"),
                    ("2026-03-02T09:00:00Z", "BULB-60W", "PLN"): (1, 1, "9.99")}
    daily = agg.revenue(facts, "day")
    assert daily["by_currency"] == {"EUR": {"orders": 2, "revenue": "1.20"}, "PLN": {"orders": 1, "revenue": "9.99"}}
    assert {(r["sku"], r["currency"]): r["revenue"] for r in daily["by_sku"]}[("BULB-60W", "EUR")] == "1.00"
    assert agg.revenue(facts, "day", since=T0 + timedelta(minutes=1))["by_currency"]["EUR"]["revenue"] == "0.70"


def test_funnel_follows_the_cohort_placed_in_each_window_with_half_even_rates():
    orders = [placed(f"o-{i}", at=T0 + timedelta(minutes=i)) for i in range(8)]
    events = [*orders, *(verified(p) for p in orders[:5]), declined(orders[5]), declined(orders[6], "suspected_fraud"),
              *(confirmed(p) for p in orders[:4]), shipped(orders[0], timedelta(hours=30))]
    f = agg.funnel(apply(*events), "hour")
    [row] = f["rows"]
    assert (row["placed"], row["payment_verified"], row["payment_declined"], row["confirmed"], row["shipped"]) == (8, 5, 2, 4, 1)
    assert row["declined_by_reason"] == {"insufficient_funds": 1, "suspected_fraud": 1}
    assert row["rates"] == {"payment_verified": "0.6250", "payment_declined": "0.2500", "confirmed": "0.5000",
                            "shipped": "0.1250", "cancelled": "0.0000"}
    assert agg.rate(1, 32) == "0.0312" and agg.rate(3, 32) == "0.0938"  # half to even on the 5th place
    assert agg.rate(0, 0) is None


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [agg.percentile(values, p) for p in (50, 95, 99)] == [50.0, 95.0, 99.0]
    assert [agg.percentile([1.0, 2.0, 3.0, 4.0], p) for p in (50, 95, 99)] == [2.0, 4.0, 4.0]
    assert agg.distribution([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}


def test_latency_spans_use_business_timestamps():
    orders = [placed(f"o-{i}", at=T0 + timedelta(minutes=i)) for i in range(4)]
    events = [*orders, *(confirmed(p, timedelta(seconds=10 * (i + 1))) for i, p in enumerate(orders)),
              shipped(orders[0], timedelta(hours=2, seconds=10))]
    lat = agg.latency(apply(*events))
    assert lat["placed_to_confirmed"] == {"count": 4, "p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0}
    assert lat["confirmed_to_shipped"]["p50"] == 7200.0


def test_first_fact_per_order_wins_and_a_standing_order_keeps_its_latest_state():
    first = placed("o-1", at=T0)
    again = placed("o-1", at=T0 + timedelta(days=1))  # an upstream system publishing the order again
    facts = apply(first, again, first)
    assert facts["placed"]["o-1"]["at"] == T0.isoformat()
    newer = standing(status="paused", changed=T0 + timedelta(hours=1))
    facts = apply(standing(), newer, standing())  # a replay of the older change after the newer one
    assert facts["standing"]["so-1"]["status"] == "paused"


def test_standing_orders_project_non_skipped_occurrences_of_active_orders():
    at = datetime(2026, 3, 2, 12, tzinfo=UTC)  # weekly from Tue 3 March, 08:00 UTC
    facts = apply(standing("so-1", skip=(2,)), standing("so-2", status="paused"),
                  standing("so-3", lines=(("CABLE-3M", 1),), every=1, unit="months", max_occurrences=2))
    out = agg.standing_orders(facts, at)
    assert out["active"] == 2 and out["by_status"] == {"active": 2, "paused": 1}
    # so-1: Mar 3, (10 skipped), 17, 24, 31 -> 4 within 30 days; so-3: Mar 3 and Apr 3, then it ends
    assert out["horizons"]["30"] == {"occurrences": 5, "units": {"BULB-60W": 40, "CABLE-3M": 1}}
    assert out["horizons"]["90"]["units"]["CABLE-3M"] == 2


def test_an_unprojectable_schedule_is_refused_when_it_arrives():
    with pytest.raises(ValueError):
        fact_of(standing(start=date(2026, 3, 3), end_date=date(2026, 3, 1)))


def test_customer_cadence_is_the_median_gap_between_orders():
    gaps = [timedelta(days=7), timedelta(days=9), timedelta(days=14)]
    ats = [T0 + sum(gaps[:i], timedelta()) for i in range(4)]
    orders = [placed(f"o-{i}", at=at) for i, at in enumerate(ats)]
    c = agg.customer(apply(*orders, confirmed(orders[0])), "c-1")
    assert c["orders_placed"] == 4 and c["orders_confirmed"] == 1
    assert c["median_interval_seconds"] == timedelta(days=9).total_seconds()
    assert c["next_order_expected_at"] == agg.iso(ats[-1] + timedelta(days=9))
    assert c["revenue"] == {"EUR": "0.30"}
    assert agg.customer(apply(*orders), "c-unknown") is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=25))
def test_redelivery_in_any_pattern_changes_no_figure(redeliveries):
    """At-least-once: however records are delivered again (each after its first delivery), the
    figures equal those of delivering each record once."""
    p = [placed("o-1"), placed("o-2", customer="c-2", at=T0 + timedelta(hours=2))]
    once = [p[0], p[1], verified(p[0]), declined(p[1]), confirmed(p[0]), shipped(p[0], timedelta(hours=1)),
            standing(), standing(status="paused", changed=T0 + timedelta(hours=1))]
    log, seen = [], 0
    for r in redeliveries:  # deliver the next record, then replay the one r steps back
        if seen < len(once):
            log.append(once[seen])
            seen += 1
        log.append(once[max(seen - 1 - r, 0)])
    log += once[seen:]
    figures = [lambda f: agg.revenue(f, "hour"), lambda f: agg.funnel(f, "hour"), agg.latency, agg.customers,
               lambda f: agg.standing_orders(f, T0)]
    for figure in figures:
        assert figure(apply(*log)) == figure(apply(*once))


def test_processing_latency_pairs_each_orders_own_record_timestamps():
    """The demo reported "placed to confirmed p95 1,209,600 s": business timestamps of orders in
    flight while the demo moved its clock 14 days. The wall-clock spans (record timestamps) say
    how long the system took; facts stored before logged_at existed are left out of them."""
    orders = [placed(f"o-{i}", at=T0) for i in range(3)]
    facts = apply(*orders, *(confirmed(p, timedelta(days=14)) for p in orders))
    for i, oid in enumerate(("o-0", "o-1")):
        facts["placed"][oid] = {**facts["placed"][oid], "logged_at": 1000.0 + i}
        facts["confirmed"][oid] = {**facts["confirmed"][oid], "logged_at": 1000.25 + i * 1.5}
    lat = agg.latency(facts)
    assert lat["placed_to_confirmed"]["p95"] == 14 * 86400.0 and lat["clock"].startswith("business")
    assert lat["processing"]["placed_to_confirmed"] == {"count": 2, "p50": 0.25, "p95": 0.75, "p99": 0.75, "max": 0.75}
    assert lat["processing"]["clock"].startswith("wall")


# --- receivables -------------------------------------------------------------------------------------------------

def invoice_issued(number, total, at, customer="c-1", currency="EUR"):
    from schemas import InvoiceIssued
    return InvoiceIssued.model_validate({
        "invoice_number": number, "customer_id": customer, "order_id": f"o-{number}",
        "lines": [{"sku": "BULB-60W", "name": "Bulb", "quantity": 1, "unit_price": {"amount": total, "currency": currency}}],
        "tax_total": {"amount": "0.00", "currency": currency}, "total": {"amount": total, "currency": currency},
        "issue_date": at.date(), "due_date": at.date(), "time_zone": "UTC", "issued_at": at})


def credit_note(number, amount, at, customer="c-1", currency="EUR"):
    from schemas import CreditNoteIssued
    return CreditNoteIssued.model_validate({
        "credit_note_number": number, "customer_id": customer, "order_id": f"o-{number}",
        "amount": {"amount": amount, "currency": currency}, "reason": "cancelled", "issue_date": at.date(),
        "issued_at": at})


def account_changed(customer, open_balance, at, currency="EUR", on_hold=False, unapplied="0.00", change="invoice"):
    from schemas import SupplierAccountChanged
    return SupplierAccountChanged.model_validate({
        "customer_id": customer, "credit_limit": "1000.00", "open_balance": open_balance, "currency": currency,
        "payment_terms_days": 30, "status": "active", "changed_at": at, "unapplied_credit": unapplied,
        "on_hold": on_hold, "change": change})


def test_receivables_outstanding_is_the_accounts_latest_open_balances_and_dso_uses_net_credit_sales():
    now = T0 + timedelta(days=100)
    facts = apply(
        invoice_issued("INV-2026-000001", "300.00", T0),                        # 100 days ago: outside 90
        invoice_issued("INV-2026-000002", "600.00", now - timedelta(days=10)),
        invoice_issued("INV-2026-000002", "600.00", now - timedelta(days=10)),  # redelivered: counted once
        invoice_issued("INV-2026-000003", "150.00", now - timedelta(days=5), customer="c-2"),
        credit_note("CN-2026-000001", "150.00", now - timedelta(days=2), customer="c-2"),
        invoice_issued("INV-2026-000004", "9.99", now - timedelta(days=1), customer="c-3", currency="PLN"),
        account_changed("c-1", "900.00", now - timedelta(days=10)),
        account_changed("c-1", "450.00", now - timedelta(days=3), change="payment"),
        account_changed("c-1", "900.00", now - timedelta(days=10)),             # an old change replayed late
        account_changed("c-2", "0.00", now - timedelta(days=2), unapplied="20.00", on_hold=True),
        account_changed("c-3", "9.99", now - timedelta(days=1), currency="PLN"))
    got = {r["currency"]: r for r in agg.receivables(facts, now)["by_currency"]}
    eur = got["EUR"]
    assert (eur["outstanding"], eur["unapplied_credit"], eur["accounts_owing"], eur["accounts_on_hold"]) == \
        ("450.00", "20.00", 1, 1)
    assert (eur["invoiced"], eur["credited"], eur["credit_sales"]) == ("750.00", "150.00", "600.00")
    assert eur["dso_days"] == "67.5"   # 450 / 600 x 90
    assert (got["PLN"]["outstanding"], got["PLN"]["dso_days"]) == ("9.99", "90.0")
    # over a 5-day period only c-3's invoice and c-2's credit note fall inside: EUR net sales are negative
    short = {r["currency"]: r for r in agg.receivables(facts, now, days=4)["by_currency"]}
    assert (short["EUR"]["credit_sales"], short["EUR"]["dso_days"]) == ("-150.00", None)


def test_two_account_changes_of_one_instant_are_ordered_by_their_offset():
    _, key, paid = fact_of(account_changed("c-1", "0.00", T0, on_hold=True, change="payment"))
    _, _, released = fact_of(account_changed("c-1", "0.00", T0, on_hold=False, change="release"))
    paid, released = {**paid, "offset": 7}, {**released, "offset": 8}
    assert merged("accounts", paid, released) == released
    assert merged("accounts", released, paid) is None            # the payment redelivered after the release
    assert merged("accounts", released, dict(released)) is None  # the same record again


def test_receivables_with_no_money_facts_are_empty():
    assert agg.receivables(apply(), T0)["by_currency"] == []
