"""The orders service's behaviour on a database of its own: events delivered through the real
inbox and handlers, what they emit read from the outbox, the API in-process. (The bus-level
path, events in and out through the broker, is tests/integration/test_orders.py.)"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from runtime.clock import OffsetClock
from schemas import Money, OrderShipped, PaymentDeclined, ProductChanged, RecurringOrderDue, deterministic_id
from services.orders.confirmation import PATTERN
from services.orders.standing_orders import occurrence_order_id
from tests.builders import DELIVERY, now, order_placed as placed, payment_verified as verified
from tests.conftest import wait_until


def topics(emitted) -> list[str]:
    return [e.topic for e in emitted]


@pytest.fixture
def staff(orders):
    with orders.api("operator", "op-1") as client:
        yield client


def view(client, order_id: str) -> dict | None:
    resp = client.get(f"/orders/{order_id}")
    return resp.json() if resp.status_code == 200 else None


def confirmed_order(orders, order_id: str = "o-1", customer: str = "c-1") -> tuple[str, str]:
    orders.deliver(placed(order_id, customer))
    assert topics(orders.deliver(verified(order_id, customer))) == ["OrderConfirmed"]
    return order_id, customer


def test_order_placed_then_payment_verified_emits_order_confirmed_with_a_confirmation_number(orders, staff):
    order = placed("o-1", "c-1")
    assert orders.deliver(order) == []
    [confirmed] = orders.deliver(verified("o-1", "c-1"))
    assert confirmed.topic == "OrderConfirmed" and confirmed.key == "o-1"
    data = confirmed.data
    assert PATTERN.match(data["confirmation_number"]), data["confirmation_number"]
    assert confirmed.id == deterministic_id("OrderConfirmed", "o-1")
    expected = order.model_dump(mode="json")
    assert [data[k] for k in ("lines", "total", "delivery", "language", "customer_id")] == \
           [expected[k] for k in ("lines", "total", "delivery", "language", "customer_id")]
    order_view = view(staff, "o-1")
    assert (order_view["status"], order_view["confirmation_number"]) == ("confirmed", data["confirmation_number"])
    assert order_view["total"] == {"amount": "12.10", "currency": "EUR"}
    assert [t["event_type"] for t in order_view["timeline"] if t["outcome"] == "applied"] == [
        "OrderPlaced", "PaymentVerified", "OrderConfirmed"]


def test_payment_verified_consumed_before_its_order_placed_still_confirms(orders, staff):
    assert orders.deliver(verified("o-1", "c-1")) == []
    assert orders.query("SELECT 1 FROM parked WHERE subject = 'o-1'"), "the early PaymentVerified is parked"
    [confirmed] = orders.deliver(placed("o-1", "c-1"))
    assert confirmed.topic == "OrderConfirmed" and PATTERN.match(confirmed.data["confirmation_number"])
    order_view = view(staff, "o-1")
    assert order_view["status"] == "confirmed"
    assert (order_view["timeline"][0]["event_type"], order_view["timeline"][0]["outcome"]) == ("PaymentVerified",
                                                                                              "parked")
    assert [t["event_type"] for t in order_view["timeline"] if t["outcome"] == "applied"] == [
        "OrderPlaced", "PaymentVerified", "OrderConfirmed"]
    assert not orders.query("SELECT 1 FROM parked WHERE subject = 'o-1'")


def test_payment_verified_again_with_a_new_event_id_confirms_once_with_the_same_number(orders, staff):
    order_id, customer = confirmed_order(orders)
    [first] = orders.outbox("OrderConfirmed", order_id)
    assert orders.deliver(verified(order_id, customer)) == []   # a new event id: the inbox cannot catch it
    assert len(orders.outbox("OrderConfirmed", order_id)) == 1
    order_view = view(staff, order_id)
    assert order_view["confirmation_number"] == first.data["confirmation_number"]
    assert [t["outcome"] for t in order_view["timeline"] if t["event_type"] == "PaymentVerified"][-1] == "ignored"


def test_the_same_delivery_twice_is_handled_once(orders):
    """The consumer's promise, on the handler tier's real inbox: a redelivered record (same event
    id) is a duplicate, whatever its handler would do."""
    order_id, customer = "o-1", "c-1"
    orders.deliver(placed(order_id, customer))
    event = verified(order_id, customer)
    assert topics(orders.deliver(event, event_id="ev-1")) == ["OrderConfirmed"]
    assert orders.deliver(event, event_id="ev-1") == []
    assert orders.query("SELECT count(*) AS n FROM order_timeline WHERE order_id = %s AND event_type = %s",
                        (order_id, "PaymentVerified"))[0]["n"] == 1


def test_shipping_through_the_endpoint_emits_order_shipped_once(orders, staff):
    order_id, _ = confirmed_order(orders)
    body = {"carrier": "DHL Freight", "tracking_number": "JD1", "distribution_centre": "DC Zagreb"}
    with orders.api("warehouse", "dc-zagreb") as warehouse:
        first = warehouse.post(f"/orders/{order_id}/shipments", json=body)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "shipped"
        assert warehouse.post(f"/orders/{order_id}/shipments", json=body).status_code == 200  # same parcel again
        other = warehouse.post(f"/orders/{order_id}/shipments", json={**body, "tracking_number": "JD-OTHER"})
        assert other.status_code == 409, other.text
    [shipped] = orders.outbox("OrderShipped", order_id)
    assert shipped.id == deterministic_id("OrderShipped", order_id)
    assert shipped.data["tracking_number"] == "JD1"
    # our own consumer sees the OrderShipped too: a no-op
    assert orders.deliver(shipped.event, event_id=shipped.id, source="orders") == []
    assert orders.inbox_outcome(shipped.id) == "handled"
    assert len(orders.outbox("OrderShipped", order_id)) == 1
    order_view = view(staff, order_id)
    assert order_view["shipment"]["tracking_number"] == "JD1"
    # the conflicting report is kept in the timeline; the repeat and our own event coming back add nothing
    assert [(t["outcome"], t["details"]["tracking_number"]) for t in order_view["timeline"]
            if t["event_type"] == "OrderShipped"] == [("applied", "JD1"), ("ignored", "JD-OTHER")]


def test_order_shipped_published_by_an_upstream_warehouse_is_accepted(orders, staff):
    order_id, _ = confirmed_order(orders)
    emitted = orders.deliver(OrderShipped(order_id=order_id, carrier="Geodis", tracking_number="GE1",
                                          distribution_centre="Partner WMS Milano", shipped_at=now()))
    order_view = view(staff, order_id)
    assert order_view["status"] == "shipped"
    assert order_view["shipment"]["distribution_centre"] == "Partner WMS Milano"
    assert emitted == [] and orders.outbox("OrderShipped") == [], "orders must not republish an upstream shipment"


def test_order_shipped_for_a_declined_order_is_dead_lettered_with_the_reason(orders, staff):
    order_id, customer = "o-1", "c-1"
    orders.deliver(placed(order_id, customer))
    orders.deliver(PaymentDeclined(order_id=order_id, customer_id=customer, method="card",
                                   reason_code="insufficient_funds", message="insufficient funds", declined_at=now()))
    assert view(staff, order_id)["status"] == "declined"
    [dead] = orders.deliver(OrderShipped(order_id=order_id, carrier="Geodis", tracking_number="GE1",
                                         distribution_centre="Partner WMS Milano", shipped_at=now()))
    assert (dead.topic, dead.key) == ("OrderShipped.DLQ", order_id)
    assert dead.headers["__connect.errors.exception.class.name"] == "Rejected"
    assert "declined" in dead.headers["__connect.errors.exception.message"]
    assert view(staff, order_id)["status"] == "declined"


def test_an_order_is_found_by_its_confirmation_number_and_by_the_warehouse_and_support_lookups(orders, staff):
    """Issue 16: GET /orders/SB-1K75-FR89 answered 404; the warehouse had no list of orders to
    ship and support could not find a customer's orders by e-mail."""
    customer = "c-1"
    email = "Buyer.1@Example.hr"
    ids = [f"o-1-{n}" for n in range(3)]
    for order_id in ids:
        orders.clock.advance(timedelta(seconds=1))   # placed one after the other, as on the bus
        event = placed(order_id, customer)
        orders.deliver(event.model_copy(update={"delivery": event.delivery.model_copy(update={"email": email})}))
    orders.deliver(verified(ids[0], customer))
    confirmed = view(staff, ids[0])
    assert confirmed["status"] == "confirmed"
    number = confirmed["confirmation_number"]
    assert all(view(staff, i) for i in ids)

    assert staff.get(f"/orders/{number}").json()["order_id"] == ids[0]
    assert staff.get(f"/orders/{number.lower()}").json()["order_id"] == ids[0]  # read out on the phone
    with orders.api("customer", customer) as mine, orders.api("customer", "x-1") as other:
        assert mine.get(f"/orders/{number}").status_code == 200
        stranger = other.get(f"/orders/{number}")
        assert stranger.status_code == 404 and stranger.headers["content-type"] == "application/problem+json"
        assert other.get("/orders", params={"email": email}).status_code == 403  # staff only

    by_email = staff.get("/orders", params={"email": email.lower(), "limit": 2}).json()
    assert (by_email["total"], [o["order_id"] for o in by_email["items"]]) == (3, ids[:2])  # oldest first
    rest = staff.get(by_email["next"]).json()
    assert ([o["order_id"] for o in rest["items"]], rest["next"]) == ([ids[2]], None)
    to_ship = staff.get("/orders", params={"status": "confirmed", "distribution_centre": "DC Zagreb",
                                           "customer_id": customer}).json()
    assert [o["order_id"] for o in to_ship["items"]] == [ids[0]]  # Croatia ships from Zagreb
    assert to_ship["items"][0]["distribution_centre"] == "DC Zagreb"
    assert staff.get("/orders", params={"status": "confirmed", "distribution_centre": "DC Lyon",
                                        "customer_id": customer}).json()["total"] == 0
    placed_at = staff.get(f"/orders/{ids[0]}").json()["placed_at"]
    after = staff.get("/orders", params={"customer_id": customer, "placed_from": placed_at}).json()
    assert ids[0] in [o["order_id"] for o in after["items"]]
    assert staff.get("/orders", params={"customer_id": customer, "placed_to": placed_at}).json()["total"] == 0
    bad = staff.get("/orders", params={"status": "lost"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "status"]


def test_customers_cannot_ship(orders):
    with orders.api("customer", "c-1") as customer:
        resp = customer.post("/orders/o-1/shipments",
                             json={"carrier": "DHL", "tracking_number": "1", "distribution_centre": "DC Zagreb"})
    assert resp.status_code == 403


def test_a_customer_reads_only_their_own_orders(orders, staff):
    order_id, owner = "o-1", "c-1"
    orders.deliver(placed(order_id, owner))
    with orders.api("customer", owner) as mine, orders.api("customer", "x-1") as other:
        assert mine.get(f"/orders/{order_id}").status_code == 200
        assert [o["order_id"] for o in mine.get(f"/customers/{owner}/orders").json()["items"]] == [order_id]
        assert other.get(f"/orders/{order_id}").status_code == 404
        assert other.get(f"/customers/{owner}/orders").status_code == 404
    assert staff.get(f"/customers/{owner}/orders").status_code == 200


def product(sku: str, price: str, active: bool, changed_at: datetime) -> ProductChanged:
    return ProductChanged(sku=sku, name=f"Product {sku}", unit_price=Money(amount=Decimal(price), currency="EUR"),
                          active=active, changed_at=changed_at)


def due(standing_order_id: str, customer: str, lines: list[tuple[str, int]], due_at: datetime) -> RecurringOrderDue:
    return RecurringOrderDue.model_validate({
        "standing_order_id": standing_order_id, "occurrence": 3, "due_at": due_at, "customer_id": customer,
        "lines": [{"sku": s, "quantity": q} for s, q in lines], "delivery": DELIVERY,
        "payment": {"mode": "card", "card_token": "tok_visa_approved"}, "language": "pl"})


def test_recurring_order_due_places_the_occurrence_at_catalog_prices_once(orders):
    so_id, customer, sku_a, sku_b = "so-1", "c-1", "TAPE-1", "GLUE-1"
    due_at = now()
    orders.deliver(product(sku_a, "2.40", True, due_at - timedelta(days=30)))
    orders.deliver(product(sku_b, "5.00", True, due_at - timedelta(days=30)))
    orders.deliver(product(sku_a, "9.99", True, due_at + timedelta(hours=1)))  # a later price: not for this date
    occurrence = due(so_id, customer, [(sku_a, 10), (sku_b, 2)], due_at)
    [record] = orders.deliver(occurrence)
    # the scheduler delivering the same occurrence again, with a new event id
    assert orders.deliver(occurrence) == []
    order_id = occurrence_order_id(so_id, 3)
    assert (record.topic, record.key) == ("OrderPlaced", order_id)
    assert len(orders.outbox("OrderPlaced", order_id)) == 1
    assert record.id == deterministic_id("OrderPlaced", so_id, 3)
    data = record.data
    assert (data["channel"], data["standing_order_id"], data["occurrence"], data["language"]) == \
           ("standing_order", so_id, 3, "pl")
    assert [(line["sku"], line["quantity"], line["unit_price"]["amount"]) for line in data["lines"]] == \
           [(sku_a, 10, "2.40"), (sku_b, 2, "5.00")]
    assert data["total"] == {"amount": "34.00", "currency": "EUR"}
    assert f"{due_at:%Y-%m-%d}" in data["priced_note"] and "catalog" in data["priced_note"]


def test_recurring_order_with_an_inactive_product_fails_the_occurrence(orders):
    so_id, customer, sku = "so-1", "c-1", "LAMP-1"
    due_at = now()
    orders.deliver(product(sku, "12.00", False, due_at - timedelta(days=1)))
    [failed] = orders.deliver(due(so_id, customer, [(sku, 1)], due_at))
    assert (failed.topic, failed.key) == ("StandingOrderOccurrenceFailed", so_id)
    assert failed.id == deterministic_id("StandingOrderOccurrenceFailed", so_id, 3)
    assert sku in failed.data["reason"] and failed.data["customer_id"] == customer
    assert orders.outbox("OrderPlaced") == []


def test_simulated_distribution_centre_ships_confirmed_orders_after_the_delay(orders, staff):
    from services.orders.distribution_centre import simulated_distribution_centres

    order_id, _ = confirmed_order(orders)
    # An hour's delay, seen from a clock two hours ahead: this order is due, nothing waits in real time.
    ctx = orders.context(clock=OffsetClock(timedelta(hours=2)), dc_ship_delay_s=3600.0)
    worker = threading.Thread(target=simulated_distribution_centres, args=(ctx,), daemon=True)
    worker.start()
    try:
        order_view = wait_until(lambda: (v := view(staff, order_id))["status"] == "shipped" and v, timeout=30,
                                interval=0.02, message="the simulated centre to ship the order")
    finally:
        ctx.stopping.set()
        worker.join(10)
    assert order_view["shipment"]["distribution_centre"] == "DC Zagreb"  # the delivery is in Croatia
    [shipped] = orders.outbox("OrderShipped", order_id)
    assert shipped.data["tracking_number"] == order_view["shipment"]["tracking_number"]


def test_ship_command_marks_the_order_shipped_through_the_endpoint(orders, staff):
    from typer.testing import CliRunner

    from services.orders.cli import app

    order_id, _ = confirmed_order(orders)
    key = orders.key("warehouse", "dc-lyon")
    args = [order_id, "--carrier", "Geodis", "--tracking", "GE1", "--centre", "DC Lyon", "--url", orders.serve()]
    result = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": key})
    assert result.exit_code == 0, result.output
    assert "shipped" in result.output
    assert view(staff, order_id)["shipment"]["tracking_number"] == "GE1"
    refused = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": "sb_cust_not-a-key"})
    assert refused.exit_code == 1 and "401" in refused.output


def test_a_cancelled_order_announces_it_and_can_no_longer_ship(orders):
    order_id, customer = confirmed_order(orders)
    with orders.api("customer", customer) as mine, orders.api("customer", "x-1") as other:
        assert other.post(f"/orders/{order_id}/cancel", json={}).status_code == 404
        resp = mine.post(f"/orders/{order_id}/cancel", json={"reason": "ordered twice by mistake"})
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
    [cancelled] = orders.outbox("OrderCancelled", order_id)
    assert cancelled.id == deterministic_id("OrderCancelled", order_id)
    assert cancelled.data["reason"] == "ordered twice by mistake"
    with orders.api("warehouse", "dc-zagreb") as warehouse:
        resp = warehouse.post(f"/orders/{order_id}/shipments", json={
            "carrier": "DHL Freight", "tracking_number": "JD1", "distribution_centre": "DC Zagreb"})
    assert resp.status_code == 409 and "cancelled" in resp.json()["detail"]


def test_a_nul_in_a_cancel_reason_is_refused_not_a_server_error(orders, staff):
    """Found by the OpenAPI fuzzing (tests/integration/test_openapi_fuzz.py): a NUL in the reason
    reached PostgreSQL's text column and answered 500. Text fields refuse NUL with a 422 that does
    not repeat what was sent, and the order is not cancelled."""
    order_id, owner = "o-1", "c-1"
    orders.deliver(placed(order_id, owner))
    resp = staff.post(f"/orders/{order_id}/cancel", json={"reason": "wrong\x00address"})
    assert resp.status_code == 422, resp.text
    assert "wrong" not in resp.text and resp.json()["errors"][0]["loc"] == ["body", "reason"]
    assert view(staff, order_id)["status"] != "cancelled"
    assert staff.get("/orders/o%00x").status_code == 422  # ids in the path are bounded too
    assert staff.get(f"/customers/{'c' * 201}/orders").status_code == 422


def test_an_order_placed_again_upstream_keeps_its_lines_and_is_noted_as_ignored(orders, staff):
    # insert_order writes the order, its lines and its timeline entry in one statement; a
    # republished OrderPlaced (a new event id) must add neither an order nor lines, only the note
    orders.deliver(placed("o-1", "c-1"))
    assert orders.deliver(placed("o-1", "c-1")) == []
    assert [(r["line_no"], r["sku"], r["quantity"], r["unit_price"]) for r in
            orders.query("SELECT * FROM order_lines WHERE order_id = 'o-1' ORDER BY line_no")] == [
        (1, "BULB-60W", 4, Decimal("1.25")), (2, "CABLE-3M", 1, Decimal("7.10"))]
    placed_notes = [t for t in view(staff, "o-1")["timeline"] if t["event_type"] == "OrderPlaced"]
    assert [t["outcome"] for t in placed_notes] == ["applied", "ignored"]
    assert placed_notes[0]["details"]["lines"] == 2 and placed_notes[0]["details"]["total"]
    assert "already recorded" in placed_notes[1]["details"]["reason"]


def test_a_confirmation_number_already_taken_is_drawn_again(orders, staff, monkeypatch):
    # mark_confirmed refuses a number another order holds (NOT EXISTS in its UPDATE, no savepoint)
    from services.orders import commands
    taken = confirmed_order(orders, "o-1")[0]
    number = view(staff, taken)["confirmation_number"]
    draws = iter([number, "SB-FRESH-0001"])
    monkeypatch.setattr(commands, "new_confirmation_number", lambda: next(draws))
    orders.deliver(placed("o-2", "c-1"))
    [confirmed] = orders.deliver(verified("o-2", "c-1"))
    assert confirmed.data["confirmation_number"] == "SB-FRESH-0001"
    o2 = view(staff, "o-2")
    assert o2["confirmation_number"] == "SB-FRESH-0001" and view(staff, taken)["confirmation_number"] == number
    assert [t["details"] for t in o2["timeline"] if t["event_type"] == "OrderConfirmed"] == [
        {"confirmation_number": "SB-FRESH-0001"}]
    # the refused draw wrote nothing: the PaymentVerified note (same statement) is there once, first
    notes = [(t["event_type"], t["outcome"]) for t in o2["timeline"]]
    assert notes == [("OrderPlaced", "applied"), ("PaymentVerified", "applied"), ("OrderConfirmed", "applied")]
    [pv] = [t["details"] for t in o2["timeline"] if t["event_type"] == "PaymentVerified"]
    assert pv["charge_reference"] == "auth-o-2" and pv["method"] == "card" and pv["verified_at"]


def test_a_payment_verified_racing_its_order_placed_on_another_replica_is_not_stranded(orders, staff):
    # What broke (found reading the code, 7 Dec 2026): a PaymentVerified handled while another
    # replica was committing the order's OrderPlaced found no order and parked; that OrderPlaced
    # had already looked for parked events, so the payment waited until the parked row expired.
    # Now both take the order's advisory lock, and the PaymentVerified looks again before parking.
    import time

    import psycopg
    from psycopg.rows import dict_row

    from services.orders import store
    with psycopg.connect(orders.url, row_factory=dict_row) as other_replica:
        assert store.insert_order(other_replica, placed("o-race", "c-1"), now())   # not committed yet
        out: dict = {}
        racing = threading.Thread(target=lambda: out.update(emitted=orders.deliver(verified("o-race", "c-1"))))
        racing.start()
        time.sleep(0.5)
        assert racing.is_alive(), "the PaymentVerified did not wait for the OrderPlaced being recorded"
        other_replica.commit()
    racing.join(10)
    assert topics(out["emitted"]) == ["OrderConfirmed"]
    assert not orders.query("SELECT 1 FROM parked WHERE subject = 'o-race'")
