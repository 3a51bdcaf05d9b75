"""Checkout to doorstep, end to end through the public interfaces: the cart's HTTP API (or an
upstream system publishing on the bus), the real broker, every service's PostgreSQL, and the
emails actually delivered to the SMTP server."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from runtime.embedded import read_mail
from schemas import OrderPlaced, OrderShipped
from services.payments.simulated_gateway import SimulatedGateway, state_path
from tests.conftest import wait_until
from tests.e2e.conftest import running_shop, delivery, open_account

pytestmark = pytest.mark.integration
SERVICES = ("cart", "payments", "orders", "notifications")


@pytest.fixture(scope="module")
def shop(harness):
    return running_shop(harness, *SERVICES)


def checkout(shop, customer: str, payment: dict, email: str, language: str = "en",
             lines: dict | None = None, key: str | None = None):
    c = shop.client("cart", "customer", customer)
    cart = c.post("/carts").json()["cart_id"]
    for sku, qty in (lines or {"BULB-LED-9W": 100}).items():
        assert c.put(f"/carts/{cart}/lines/{sku}", json={"quantity": qty}).status_code == 200
    body = {"delivery": delivery(email), "payment": payment, "language": language}
    return c, cart, c.post(f"/carts/{cart}/checkout", json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})


def status(shop, order_id: str) -> dict:
    with shop.client("orders", "operator", "e2e-operator") as api:
        r = api.get(f"/orders/{order_id}")
        return r.json() if r.status_code == 200 else {}


def mail_to(stack, address: str) -> list:
    return [m for m in read_mail(stack.mail.maildir) if m["To"] == address]


def test_card_order_is_paid_confirmed_shipped_and_emailed_once_in_the_customers_language(shop, stack, unique):
    email = f"compras-{unique}@example.es"
    _, _, r = checkout(shop, f"madrid-{unique}", {"mode": "card", "card_token": "tok_visa_approved"}, email, "es")
    assert r.status_code == 202, r.text
    order_id = r.json()["order_id"]
    wait_until(lambda: status(shop, order_id).get("status") == "confirmed", timeout=60, message="confirmation")
    number = status(shop, order_id)["confirmation_number"]
    with shop.client("orders", "warehouse", "dc-zagreb") as dc:
        shipped = dc.post(f"/orders/{order_id}/shipments", json={"carrier": "DHL", "tracking_number": f"JD{unique}",
                                                                  "distribution_centre": "DC Zagreb"})
        assert shipped.status_code == 201, shipped.text
    wait_until(lambda: len(mail_to(stack, email)) >= 2, timeout=60, message="confirmation and shipping emails")
    mails = mail_to(stack, email)
    assert [m["X-Salesbus-Kind"] for m in mails] == ["order_confirmation", "shipping_confirmation"]
    assert all(m["X-Salesbus-Language"] == "es" for m in mails)
    assert number in mails[0]["Subject"] and mails[0]["Subject"].startswith("Pedido confirmado")
    assert f"JD{unique}" in mails[1].get_body(("plain",)).get_content()
    view = status(shop, order_id)
    assert view["status"] == "shipped"
    # PaymentVerified may be consumed before OrderPlaced (other topic): then it is parked first
    applied = [e["event_type"] for e in view["timeline"] if e["outcome"] == "applied"]
    assert applied == ["OrderPlaced", "PaymentVerified", "OrderConfirmed", "OrderShipped"]


def test_declined_card_is_never_confirmed_and_the_customer_is_told_why(shop, stack, unique):
    email = f"zakupy-{unique}@example.pl"
    _, _, r = checkout(shop, f"warsaw-{unique}", {"mode": "card", "card_token": "tok_insufficient_funds"}, email, "pl")
    order_id = r.json()["order_id"]
    wait_until(lambda: status(shop, order_id).get("status") == "declined", timeout=60, message="decline")
    wait_until(lambda: mail_to(stack, email), timeout=60, message="the decline email")
    (mail,) = mail_to(stack, email)
    assert mail["X-Salesbus-Kind"] == "payment_declined" and mail["X-Salesbus-Language"] == "pl"
    assert status(shop, order_id)["confirmation_number"] is None


def test_gateway_timeout_is_retried_and_charges_once(shop, stack, unique):
    _, _, r = checkout(shop, f"timeout-{unique}", {"mode": "card", "card_token": "tok_timeout_once"},
                       f"t-{unique}@example.hr")
    order_id = r.json()["order_id"]
    wait_until(lambda: status(shop, order_id).get("status") == "confirmed", timeout=60, message="confirmation")
    assert SimulatedGateway(state_path(shop.cfg).resolve()).charges_for(order_id) == 1


def test_account_orders_within_and_over_the_credit_limit(shop, stack, unique):
    customer = f"hotels-{unique}"
    open_account(shop, customer, "500.00")
    _, _, within = checkout(shop, customer, {"mode": "account"}, f"a-{unique}@example.hr",
                            lines={"BULB-LED-9W": 200})   # 200 × 1.85 = 370.00
    _, _, over = checkout(shop, customer, {"mode": "account"}, f"a-{unique}@example.hr",
                          lines={"BULB-LED-9W": 100})   # 185.00 more would pass 500.00
    ok, refused = within.json()["order_id"], over.json()["order_id"]
    wait_until(lambda: status(shop, ok).get("status") == "confirmed", timeout=60, message="within limit")
    wait_until(lambda: status(shop, refused).get("status") == "declined", timeout=60, message="over limit")
    with shop.client("payments", "customer", customer) as me:
        account = me.get(f"/accounts/{customer}").json()
    assert Decimal(account["open_balance"]) == Decimal("370.00")


def test_a_retried_checkout_places_one_order(shop, stack, unique):
    key = uuid.uuid4().hex
    c, cart, first = checkout(shop, f"retry-{unique}", {"mode": "card", "card_token": "tok_visa_approved"},
                              f"r-{unique}@example.hr", key=key)
    body = {"delivery": delivery(f"r-{unique}@example.hr"), "payment": {"mode": "card", "card_token": "tok_visa_approved"},
            "language": "en"}
    again = c.post(f"/carts/{cart}/checkout", json=body, headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()["order_id"]) == (202, first.json()["order_id"])
    wait_until(lambda: len(mail_to(stack, f"r-{unique}@example.hr")) == 1, timeout=60,
               message="one confirmation email")
    with shop.client("orders", "customer", f"retry-{unique}") as me:
        assert me.get(f"/customers/retry-{unique}/orders").json()["total"] == 1


def test_upstream_orders_duplicates_and_wrong_totals(shop, stack, bus, unique):
    """An EDI gateway publishes straight onto the bus: a duplicate (new event id) is charged once,
    a wrong total is declined and never charged."""
    customer = f"edi-{unique}"
    open_account(shop, customer, "10000.00")

    def edi(order_id: str, total: str) -> OrderPlaced:
        return OrderPlaced.model_validate({
            "order_id": order_id, "customer_id": customer, "channel": "edi",
            "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 1000,
                       "unit_price": {"amount": "1.85", "currency": "EUR"}}],
            "total": {"amount": total, "currency": "EUR"}, "delivery": delivery(f"e-{unique}@example.vn"),
            "payment": {"mode": "account"}, "language": "vi", "placed_at": datetime.now(timezone.utc)})

    bus.publish(edi(f"edi-ok-{unique}", "1850.00"))
    bus.publish(edi(f"edi-ok-{unique}", "1850.00"))   # the gateway sent it twice
    bus.publish(edi(f"edi-bad-{unique}", "1000.00"))  # does not match its lines
    wait_until(lambda: status(shop, f"edi-ok-{unique}").get("status") == "confirmed", timeout=60)
    wait_until(lambda: status(shop, f"edi-bad-{unique}").get("status") == "declined", timeout=60)
    with shop.client("payments", "operator", "e2e-operator") as ops:
        assert Decimal(ops.get(f"/accounts/{customer}").json()["open_balance"]) == Decimal("1850.00")
    # an upstream warehouse system reports the shipment on the bus
    bus.publish(OrderShipped(order_id=f"edi-ok-{unique}", carrier="Geodis", tracking_number=f"GE{unique}",
                             distribution_centre="DC Lyon", shipped_at=datetime.now(timezone.utc)))
    wait_until(lambda: len(mail_to(stack, f"e-{unique}@example.vn")) == 3, timeout=60,
               message="confirmation, decline and shipping emails")
    kinds = sorted(m["X-Salesbus-Kind"] for m in mail_to(stack, f"e-{unique}@example.vn"))
    assert kinds == ["order_confirmation", "payment_declined", "shipping_confirmation"]


def test_a_customer_cannot_see_or_ship_another_customers_order(shop, unique):
    _, _, r = checkout(shop, f"owner-{unique}", {"mode": "card", "card_token": "tok_visa_approved"},
                       f"o-{unique}@example.hr")
    order_id = r.json()["order_id"]
    wait_until(lambda: status(shop, order_id).get("status") == "confirmed", timeout=60)
    with shop.client("orders", "customer", f"intruder-{unique}") as intruder:
        assert intruder.get(f"/orders/{order_id}").status_code == 404
        assert intruder.get(f"/customers/owner-{unique}/orders").status_code in (403, 404)
        assert intruder.post(f"/orders/{order_id}/shipments", json={"carrier": "x", "tracking_number": "y",
                                                                    "distribution_centre": "z"}).status_code == 403
    with shop.client("orders", "customer", f"owner-{unique}") as owner:
        assert owner.get(f"/orders/{order_id}").status_code == 200
