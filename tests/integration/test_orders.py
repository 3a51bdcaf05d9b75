"""The orders service against the real broker and PostgreSQL: upstream events in, events out.

Card tokens are chosen so that a payments service running in the same test session (another
test file may have started it) reaches the same outcome as the events these tests publish.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from runtime.clock import OffsetClock
from runtime.service import ServiceContext
from runtime.tap import tap
from schemas import (Money, OrderPlaced, OrderShipped, PaymentDeclined, PaymentVerified, ProductChanged,
                     RecurringOrderDue, deterministic_id)
from services.orders.confirmation import PATTERN
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
WAIT = 60
DELIVERY = {"recipient": "Goods in", "address_lines": ["Obala 1"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"}


@pytest.fixture(scope="module")
def orders(harness):
    harness.start("orders")
    return harness


@pytest.fixture(scope="module")
def staff(orders):
    with orders.client("orders", "operator", "op-1") as client:
        yield client


def now() -> datetime:
    return datetime.now(timezone.utc)


def eur(amount: str) -> dict:
    return {"amount": amount, "currency": "EUR"}


def placed(order_id: str, customer_id: str, token: str = "tok_visa_approved") -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "language": "hr",
        "lines": [{"sku": "BULB-60W", "name": "Bulb 60 W", "quantity": 4, "unit_price": eur("1.25")},
                  {"sku": "CABLE-3M", "name": "Cable 3 m", "quantity": 1, "unit_price": eur("7.10")}],
        "total": eur("12.10"), "delivery": DELIVERY,
        "payment": {"mode": "card", "card_token": token}, "placed_at": now()})


def verified(order_id: str, customer_id: str) -> PaymentVerified:
    return PaymentVerified(order_id=order_id, customer_id=customer_id, amount=Money(**eur("12.10")),
                           method="card", charge_reference=f"auth-{order_id}", verified_at=now())


def events_on(cfg, topic: str, key: str) -> list[dict]:
    return [rec.event() for rec in tap(cfg.kafka_common(), [topic], follow=False, idle_exit_s=1.0) if rec.key == key]


def wait_for_events(cfg, topic: str, key: str, count: int = 1) -> list[dict]:
    return wait_until(lambda: (found := events_on(cfg, topic, key)) and len(found) >= count and found,
                      timeout=WAIT, interval=0.5, message=f"{count} {topic} for {key}")


def orders_db(cfg, sql: str, params=()) -> list[dict]:
    with psycopg.connect(cfg.database_for("orders"), row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def handled(cfg, event_id: str) -> bool:
    return bool(orders_db(cfg, "SELECT 1 FROM inbox WHERE event_id = %s", (event_id,)))


def status_of(client, order_id: str) -> dict | None:
    resp = client.get(f"/orders/{order_id}")
    return resp.json() if resp.status_code == 200 else None


def wait_for_status(client, order_id: str, status: str) -> dict:
    return wait_until(lambda: (o := status_of(client, order_id)) and o["status"] == status and o,
                      timeout=WAIT, message=f"order {order_id} to be {status}")


def confirmed_order(bus, staff, unique: str, customer: str | None = None) -> tuple[str, str]:
    order_id, customer = f"o-{unique}", customer or f"c-{unique}"
    bus.publish(placed(order_id, customer))
    bus.publish(verified(order_id, customer))
    wait_for_status(staff, order_id, "confirmed")
    return order_id, customer


def test_order_placed_then_payment_verified_emits_order_confirmed_with_a_confirmation_number(cfg, bus, orders, staff,
                                                                                             unique):
    order_id, customer = f"o-{unique}", f"c-{unique}"
    order = placed(order_id, customer)
    bus.publish(order)
    bus.publish(verified(order_id, customer))
    [confirmed] = wait_for_events(cfg, "OrderConfirmed", order_id)
    data = confirmed["data"]
    assert PATTERN.match(data["confirmation_number"]), data["confirmation_number"]
    assert confirmed["id"] == deterministic_id("OrderConfirmed", order_id)
    expected = order.model_dump(mode="json")
    assert [data[k] for k in ("lines", "total", "delivery", "language", "customer_id")] == \
           [expected[k] for k in ("lines", "total", "delivery", "language", "customer_id")]
    view = status_of(staff, order_id)
    assert (view["status"], view["confirmation_number"]) == ("confirmed", data["confirmation_number"])
    assert view["total"] == {"amount": "12.10", "currency": "EUR"}
    # (the PaymentVerified may have been consumed first and parked: different topics, no order between them)
    assert [t["event_type"] for t in view["timeline"] if t["outcome"] == "applied"] == [
        "OrderPlaced", "PaymentVerified", "OrderConfirmed"]


def test_payment_verified_consumed_before_its_order_placed_still_confirms(cfg, bus, orders, staff, unique):
    order_id, customer = f"o-{unique}", f"c-{unique}"
    bus.publish(verified(order_id, customer))
    wait_until(lambda: orders_db(cfg, "SELECT 1 FROM parked_events WHERE order_id = %s", (order_id,)),
               timeout=WAIT, message="the early PaymentVerified to be parked")
    bus.publish(placed(order_id, customer))
    [confirmed] = wait_for_events(cfg, "OrderConfirmed", order_id)
    assert PATTERN.match(confirmed["data"]["confirmation_number"])
    view = wait_for_status(staff, order_id, "confirmed")
    assert (view["timeline"][0]["event_type"], view["timeline"][0]["outcome"]) == ("PaymentVerified", "parked")
    assert [t["event_type"] for t in view["timeline"] if t["outcome"] == "applied"] == [
        "OrderPlaced", "PaymentVerified", "OrderConfirmed"]
    assert not orders_db(cfg, "SELECT 1 FROM parked_events WHERE order_id = %s", (order_id,))


def test_payment_verified_again_with_a_new_event_id_confirms_once_with_the_same_number(cfg, bus, orders, staff,
                                                                                        unique):
    order_id, customer = confirmed_order(bus, staff, unique)
    [first] = wait_for_events(cfg, "OrderConfirmed", order_id)
    again = bus.publish(verified(order_id, customer))  # a new event id: the inbox cannot catch it
    wait_until(lambda: handled(cfg, again), timeout=WAIT, message="the second PaymentVerified to be handled")
    assert len(events_on(cfg, "OrderConfirmed", order_id)) == 1
    view = status_of(staff, order_id)
    assert view["confirmation_number"] == first["data"]["confirmation_number"]
    assert [t["outcome"] for t in view["timeline"] if t["event_type"] == "PaymentVerified"][-1] == "ignored"


def test_shipping_through_the_endpoint_emits_order_shipped_once(cfg, bus, orders, staff, unique):
    order_id, _ = confirmed_order(bus, staff, unique)
    body = {"carrier": "DHL Freight", "tracking_number": f"JD{unique}", "distribution_centre": "DC Zagreb"}
    with orders.client("orders", "warehouse", "dc-zagreb") as warehouse:
        first = warehouse.post(f"/orders/{order_id}/shipments", json=body)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "shipped"
        assert warehouse.post(f"/orders/{order_id}/shipments", json=body).status_code == 200  # same parcel again
        other = warehouse.post(f"/orders/{order_id}/shipments", json={**body, "tracking_number": "JD-OTHER"})
        assert other.status_code == 409, other.text
    [shipped] = wait_for_events(cfg, "OrderShipped", order_id)
    assert shipped["id"] == deterministic_id("OrderShipped", order_id)
    assert shipped["data"]["tracking_number"] == f"JD{unique}"
    # our own consumer sees the OrderShipped too: a no-op
    wait_until(lambda: handled(cfg, shipped["id"]), timeout=WAIT, message="orders to consume its own OrderShipped")
    assert len(events_on(cfg, "OrderShipped", order_id)) == 1
    view = status_of(staff, order_id)
    assert view["shipment"]["tracking_number"] == f"JD{unique}"
    # the conflicting report is kept in the timeline; the repeat and our own event coming back add nothing
    assert [(t["outcome"], t["details"]["tracking_number"]) for t in view["timeline"]
            if t["event_type"] == "OrderShipped"] == [("applied", f"JD{unique}"), ("ignored", "JD-OTHER")]


def test_order_shipped_published_by_an_upstream_warehouse_is_accepted(cfg, bus, orders, staff, unique):
    order_id, _ = confirmed_order(bus, staff, unique)
    bus.publish(OrderShipped(order_id=order_id, carrier="Geodis", tracking_number=f"GE{unique}",
                             distribution_centre="Partner WMS Milano", shipped_at=now()))
    view = wait_for_status(staff, order_id, "shipped")
    assert view["shipment"]["distribution_centre"] == "Partner WMS Milano"
    records = events_on(cfg, "OrderShipped", order_id)
    assert [r["source"] for r in records] == ["upstream-test"], "orders must not republish an upstream shipment"


def test_order_shipped_for_a_declined_order_is_dead_lettered_with_the_reason(cfg, bus, orders, staff, unique):
    order_id, customer = f"o-{unique}", f"c-{unique}"
    bus.publish(placed(order_id, customer, token="tok_insufficient_funds"))
    bus.publish(PaymentDeclined(order_id=order_id, customer_id=customer, method="card",
                                reason_code="insufficient_funds", message="insufficient funds", declined_at=now()))
    wait_for_status(staff, order_id, "declined")
    bus.publish(OrderShipped(order_id=order_id, carrier="Geodis", tracking_number=f"GE{unique}",
                             distribution_centre="Partner WMS Milano", shipped_at=now()))
    [dead] = wait_until(lambda: [r for r in tap(cfg.kafka_common(), ["OrderShipped.DLQ"], follow=False, idle_exit_s=1.0)
                                 if r.key == order_id], timeout=WAIT, interval=0.5, message="the DLQ record")
    assert dead.headers["__connect.errors.exception.class.name"] == "Rejected"
    assert "declined" in dead.headers["__connect.errors.exception.message"]
    assert status_of(staff, order_id)["status"] == "declined"


def test_customers_cannot_ship(orders, unique):
    with orders.client("orders", "customer", f"c-{unique}") as customer:
        resp = customer.post(f"/orders/o-{unique}/shipments",
                             json={"carrier": "DHL", "tracking_number": "1", "distribution_centre": "DC Zagreb"})
    assert resp.status_code == 403


def test_a_customer_reads_only_their_own_orders(bus, orders, staff, unique):
    order_id, owner = f"o-{unique}", f"c-{unique}"
    bus.publish(placed(order_id, owner))
    wait_until(lambda: status_of(staff, order_id), timeout=WAIT, message="the order to be recorded")
    with orders.client("orders", "customer", owner) as mine, \
            orders.client("orders", "customer", f"x-{unique}") as other:
        assert mine.get(f"/orders/{order_id}").status_code == 200
        assert [o["order_id"] for o in mine.get(f"/customers/{owner}/orders").json()] == [order_id]
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


def wait_for_catalog(cfg, *skus: str, rows: int = 1) -> None:
    wait_until(lambda: all(len(orders_db(cfg, "SELECT 1 FROM catalog_prices WHERE sku = %s", (s,))) >= rows
                           for s in skus), timeout=WAIT, message=f"catalog copy of {skus}")


def test_recurring_order_due_places_the_occurrence_at_catalog_prices_once(cfg, bus, orders, unique):
    so_id, customer, sku_a, sku_b = f"so-{unique}", f"c-{unique}", f"TAPE-{unique.upper()}", f"GLUE-{unique.upper()}"
    due_at = now()
    bus.publish(product(sku_a, "2.40", True, due_at - timedelta(days=30)))
    bus.publish(product(sku_b, "5.00", True, due_at - timedelta(days=30)))
    bus.publish(product(sku_a, "9.99", True, due_at + timedelta(hours=1)))  # a later price: not for this date
    wait_for_catalog(cfg, sku_a, rows=2)
    wait_for_catalog(cfg, sku_b)
    occurrence = due(so_id, customer, [(sku_a, 10), (sku_b, 2)], due_at)
    bus.publish(occurrence)
    again = bus.publish(occurrence)  # the scheduler delivering the same occurrence again, with a new event id
    order_id = deterministic_id(so_id, 3)
    [record] = wait_for_events(cfg, "OrderPlaced", order_id)
    wait_until(lambda: handled(cfg, again), timeout=WAIT, message="the repeated RecurringOrderDue to be handled")
    assert len(events_on(cfg, "OrderPlaced", order_id)) == 1
    assert record["id"] == deterministic_id("OrderPlaced", so_id, 3)
    data = record["data"]
    assert (data["channel"], data["standing_order_id"], data["occurrence"], data["language"]) == \
           ("standing_order", so_id, 3, "pl")
    assert [(line["sku"], line["quantity"], line["unit_price"]["amount"]) for line in data["lines"]] == \
           [(sku_a, 10, "2.40"), (sku_b, 2, "5.00")]
    assert data["total"] == {"amount": "34.00", "currency": "EUR"}
    assert f"{due_at:%Y-%m-%d}" in data["priced_note"] and "catalog" in data["priced_note"]


def test_recurring_order_with_an_inactive_product_fails_the_occurrence(cfg, bus, orders, unique):
    so_id, customer, sku = f"so-{unique}", f"c-{unique}", f"LAMP-{unique.upper()}"
    due_at = now()
    bus.publish(product(sku, "12.00", False, due_at - timedelta(days=1)))
    wait_for_catalog(cfg, sku)
    bus.publish(due(so_id, customer, [(sku, 1)], due_at))
    [failed] = wait_for_events(cfg, "StandingOrderOccurrenceFailed", so_id)
    assert failed["id"] == deterministic_id("StandingOrderOccurrenceFailed", so_id, 3)
    assert sku in failed["data"]["reason"] and failed["data"]["customer_id"] == customer
    assert events_on(cfg, "OrderPlaced", deterministic_id(so_id, 3)) == []


def test_simulated_distribution_centre_ships_confirmed_orders_after_the_delay(cfg, bus, orders, staff, unique):
    from services.orders.distribution_centre import simulated_distribution_centres
    from services.orders.service import SERVICE

    order_id, _ = confirmed_order(bus, staff, unique)
    proc = orders.procs["orders"]
    stopping = threading.Event()
    # An hour's delay, seen from a clock two hours ahead: this order is due, nothing waits in real time.
    ctx = ServiceContext(SERVICE, cfg.model_copy(update={"dc_ship_delay_s": 3600.0}), proc.pool,
                         OffsetClock(timedelta(hours=2)), stopping)
    worker = threading.Thread(target=simulated_distribution_centres, args=(ctx,), daemon=True)
    worker.start()
    try:
        view = wait_for_status(staff, order_id, "shipped")
    finally:
        stopping.set()
        worker.join(10)
    assert view["shipment"]["distribution_centre"] == "DC Zagreb"  # the delivery is in Croatia
    [shipped] = wait_for_events(cfg, "OrderShipped", order_id)
    assert shipped["data"]["tracking_number"] == view["shipment"]["tracking_number"]


def test_ship_command_marks_the_order_shipped_through_the_endpoint(cfg, bus, orders, staff, unique):
    from typer.testing import CliRunner

    from services.orders.cli import app

    order_id, _ = confirmed_order(bus, staff, unique)
    key = orders.key("warehouse", "dc-lyon")["Authorization"].removeprefix("Bearer ")
    args = [order_id, "--carrier", "Geodis", "--tracking", f"GE{unique}", "--centre", "DC Lyon",
            "--url", orders.urls["orders"]]
    result = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": key})
    assert result.exit_code == 0, result.output
    assert "shipped" in result.output
    assert status_of(staff, order_id)["shipment"]["tracking_number"] == f"GE{unique}"
    refused = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": "sb_cust_not-a-key"})
    assert refused.exit_code == 1 and "401" in refused.output


def test_a_cancelled_order_announces_it_and_can_no_longer_ship(cfg, bus, orders, staff, unique):
    order_id, customer = confirmed_order(bus, staff, unique)
    with orders.client("orders", "customer", customer) as mine, \
            orders.client("orders", "customer", f"x-{unique}") as other:
        assert other.post(f"/orders/{order_id}/cancel", json={}).status_code == 404
        resp = mine.post(f"/orders/{order_id}/cancel", json={"reason": "ordered twice by mistake"})
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
    [cancelled] = wait_for_events(cfg, "OrderCancelled", order_id)
    assert cancelled["id"] == deterministic_id("OrderCancelled", order_id)
    assert cancelled["data"]["reason"] == "ordered twice by mistake"
    with orders.client("orders", "warehouse", "dc-zagreb") as warehouse:
        resp = warehouse.post(f"/orders/{order_id}/shipments", json={
            "carrier": "DHL Freight", "tracking_number": "JD1", "distribution_centre": "DC Zagreb"})
    assert resp.status_code == 409 and "cancelled" in resp.json()["detail"]
