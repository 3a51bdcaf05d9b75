"""The orders service on the real broker: what only the bus shows. Upstream events published to
their topics (OrderPlaced and PaymentVerified travel on different topics, in either order) reach
the running service, and its OrderConfirmed reaches the bus through the outbox relay. Every other
orders behaviour is tested on the handler tier (tests/handlers/test_orders.py), in milliseconds."""
from __future__ import annotations

import pytest

from runtime.tap import tap
from schemas import deterministic_id
from services.orders.confirmation import PATTERN
from tests.builders import order_placed as placed, payment_verified as verified
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
WAIT = 60


@pytest.fixture(scope="module")
def orders(harness):
    harness.start("orders")
    return harness


@pytest.fixture(scope="module")
def staff(orders):
    with orders.client("orders", "operator", "op-1") as client:
        yield client


def events_on(cfg, topic: str, key: str) -> list[dict]:
    return [rec.event() for rec in tap(cfg.kafka_common(), [topic], follow=False, idle_exit_s=1.0) if rec.key == key]


def wait_for_events(cfg, topic: str, key: str, count: int = 1) -> list[dict]:
    return wait_until(lambda: (found := events_on(cfg, topic, key)) and len(found) >= count and found,
                      timeout=WAIT, interval=0.5, message=f"{count} {topic} for {key}")


def status_of(client, order_id: str) -> dict | None:
    resp = client.get(f"/orders/{order_id}")
    return resp.json() if resp.status_code == 200 else None


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
