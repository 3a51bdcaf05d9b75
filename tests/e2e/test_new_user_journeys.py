"""Issue 16's "done means": the new-user journeys, each end to end through documented public
interfaces only — the services' HTTP APIs as their OpenAPI documents say and the `salesbus` CLI
(run as an operator or analyst would: `salesbus key ...` on the stack's data dir, `salesbus
export` and `salesbus dlq list` on the stack's broker). Every clock move goes through the
harness clock. Journey 4, a standing order skipping its third occurrence, is
tests/e2e/test_recurring_sales_and_reminders.py::test_a_standing_order_skips_its_third_occurrence."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest
from typer.testing import CliRunner

from runtime.cli import app as salesbus_cli
from tests.conftest import wait_until
from tests.e2e.conftest import delivery, open_account, running_shop

pytestmark = pytest.mark.integration
ALL = ("cart", "payments", "orders", "notifications", "scheduler", "crm")
WAIT = 90
CARD = {"mode": "card", "card_token": "tok_visa_approved"}
ACCOUNT = {"mode": "account"}


@pytest.fixture(scope="module")
def system(harness):
    return running_shop(harness, *ALL)


@pytest.fixture
def salesbus(cfg):
    """`salesbus ARGS...` against the test stack's broker; returns (exit code, output)."""
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(salesbus_cli, list(args), env={"SALESBUS_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap})
        return result.exit_code, result.output
    return run


def checkout(system, customer: str, payment: dict, email: str, lines: dict[str, int] | None = None) -> str:
    shop = system.client("cart", "customer", customer)
    cart = shop.post("/carts").json()["cart_id"]
    for sku, qty in (lines or {"BULB-LED-9W": 10}).items():
        assert shop.put(f"/carts/{cart}/lines/{sku}", json={"quantity": qty}).status_code == 200
    r = shop.post(f"/carts/{cart}/checkout", headers={"Idempotency-Key": uuid.uuid4().hex},
                  json={"delivery": delivery(email), "payment": payment, "language": "en"})
    assert r.status_code == 202, r.text
    return r.json()["order_id"]


def order(system, ref: str, role: str = "operator", subject: str = "journey-operator") -> httpx.Response:
    with system.client("orders", role, subject) as api:
        return api.get(f"/orders/{ref}")


def confirmed(system, order_id: str) -> dict:
    wait_until(lambda: order(system, order_id).status_code == 200
               and order(system, order_id).json()["status"] in ("confirmed", "declined"),
               timeout=WAIT, message=f"a payment decision for {order_id}")
    view = order(system, order_id).json()
    assert view["status"] == "confirmed", view
    return view


# 1 ------------------------------------------------------------------------------------------------
def test_operator_sets_up_catalog_a_supplier_account_and_keys(system, salesbus, unique):
    data_dir = str(system.keys_file.parent)   # the stack's data dir: its api_keys.json is what services read
    code, out = salesbus("key", "issue", "operator", f"olga-{unique}", "--expires", "30d", "--data-dir", data_dir)
    assert code == 0, out
    [key] = [line for line in out.splitlines() if line.startswith("sb_")]   # stdout: the key alone
    as_olga = {"Authorization": f"Bearer {key}"}
    sku, customer = f"JRN-{unique.upper()}", f"journey-acct-{unique}"

    product = httpx.put(f"{system.urls['cart']}/products/{sku}", headers=as_olga, timeout=30,
                        json={"name": "Journey lamp", "unit_price": {"amount": "12.40", "currency": "EUR"}})
    assert product.status_code in (200, 201), product.text
    listed = httpx.get(f"{system.urls['cart']}/products/{sku}", timeout=30, headers=as_olga).json()
    assert (listed["sku"], listed["unit_price"]["amount"], listed["active"]) == (sku, "12.40", True)
    account = httpx.put(f"{system.urls['payments']}/accounts/{customer}", headers=as_olga, timeout=30,
                        json={"credit_limit": "750.00", "currency": "EUR", "payment_terms_days": 30,
                              "status": "active"})
    assert account.status_code in (200, 201), account.text
    got = httpx.get(f"{system.urls['payments']}/accounts/{customer}", headers=as_olga, timeout=30).json()
    assert (got["credit_limit"], got["open_balance"]) == ("750.00", "0.00")

    code, out = salesbus("key", "list", "--json", "--data-dir", data_dir)
    assert code == 0, out
    keys = json.loads(out)["keys"]
    [mine] = [k for k in keys if k["subject"] == f"olga-{unique}"]
    assert (mine["role"], mine["state"]) == ("operator", "active") and mine["expires"] is not None
    assert key not in out, "a key's secret is shown only when issued"

    code, out = salesbus("key", "revoke", mine["id"], "--reason", "left the team", "--data-dir", data_dir)
    assert code == 0, out
    refused = httpx.get(f"{system.urls['payments']}/accounts/{customer}", headers=as_olga, timeout=30)
    assert refused.status_code == 401 and "revoked" in refused.text, refused.text
    code, out = salesbus("key", "list", "--json", "--data-dir", data_dir)
    [after] = [k for k in json.loads(out)["keys"] if k["id"] == mine["id"]]
    assert after["state"] == "revoked" and after["revoked_reason"] == "left the team"


# 2 ------------------------------------------------------------------------------------------------
def test_customer_checks_out_by_card_and_on_account_and_finds_each_order_by_confirmation_number(system, unique):
    customer = f"journey-buyer-{unique}"
    open_account(system, customer, "1000.00")
    by_card = confirmed(system, checkout(system, customer, CARD, f"card-{unique}@example.hr"))
    on_account = confirmed(system, checkout(system, customer, ACCOUNT, f"acct-{unique}@example.hr"))
    for placed in (by_card, on_account):
        number = placed["confirmation_number"]
        assert number and number.startswith("SB-"), placed
        found = order(system, number, "customer", customer)
        assert found.status_code == 200, found.text
        assert (found.json()["order_id"], found.json()["status"]) == (placed["order_id"], "confirmed")
        # another customer cannot look it up by its number
        assert order(system, number, "customer", f"stranger-{unique}").status_code == 404
    assert by_card["confirmation_number"] != on_account["confirmation_number"]
    assert order(system, "SB-ZZZZ-ZZZZ", "customer", customer).status_code == 404


# 3 ------------------------------------------------------------------------------------------------
def test_warehouse_clerk_lists_what_to_ship_and_ships_it(system, unique):
    customer = f"journey-dc-{unique}"
    order_id = confirmed(system, checkout(system, customer, CARD, f"dc-{unique}@example.hr"))["order_id"]  # HR
    clerk = system.client("orders", "warehouse", f"clerk-{unique}")

    def to_ship(centre: str) -> list[str]:
        r = clerk.get("/orders", params={"status": "confirmed", "distribution_centre": centre,
                                         "customer_id": customer, "limit": 100})
        assert r.status_code == 200, r.text
        return [o["order_id"] for o in r.json()["items"]]
    assert to_ship("DC Zagreb") == [order_id]
    assert to_ship("DC Lyon") == [], "an HR delivery is served by DC Zagreb"

    shipped = clerk.post(f"/orders/{order_id}/shipments", json={"carrier": "GLS", "tracking_number": f"GLS{unique}",
                                                                "distribution_centre": "DC Zagreb"})
    assert shipped.status_code == 201, shipped.text
    assert order(system, order_id).json()["status"] == "shipped"
    assert to_ship("DC Zagreb") == [], "a shipped order is no longer on the list to ship"
    done = clerk.get("/orders", params={"status": "shipped", "distribution_centre": "DC Zagreb",
                                        "customer_id": customer}).json()["items"]
    assert [o["order_id"] for o in done] == [order_id]


# 5 ------------------------------------------------------------------------------------------------
def test_salesperson_sees_a_new_customers_profile_appear_with_its_first_order_and_the_right_balance(system, unique):
    customer = f"journey-new-{unique}"   # never created in the CRM: the first order introduces them
    open_account(system, customer, "900.00")
    crm = system.client("crm", "salesperson", f"sara-{unique}")
    assert crm.get(f"/customers/{customer}").status_code == 404
    confirmed(system, checkout(system, customer, ACCOUNT, f"new-{unique}@example.hr", lines={"BULB-LED-9W": 20}))

    def found() -> list[dict]:
        r = crm.get("/customers", params={"q": customer, "needs_review": True})
        assert r.status_code == 200, r.text
        return [c for c in r.json()["items"] if c["customer_id"] == customer]
    [summary] = wait_until(found, timeout=WAIT, message="the CRM to learn the customer from its first order")
    assert summary["needs_review"] is True and summary["source"] == "first_order"

    with system.client("payments", "operator", "journey-operator") as ops:
        owed = ops.get(f"/accounts/{customer}").json()["open_balance"]
    assert Decimal(owed) == Decimal("37.00")   # 20 × 1.85

    def view() -> dict | None:
        v = crm.get(f"/customers/{customer}").json()
        account = v.get("supplier_account")
        return v if account and Decimal(account["open_balance"]) == Decimal(owed) and v["orders_total"] >= 1 else None
    profile = wait_until(view, timeout=WAIT, message=f"the CRM's supplier balance to follow payments' {owed}")
    assert profile["needs_review"] is True and profile["first_order_id"]
    assert profile["first_order_delivery"]["email"] == f"new-{unique}@example.hr"
    assert Decimal(profile["supplier_account"]["credit_limit"]) == Decimal("900.00")


# 6 ------------------------------------------------------------------------------------------------
def test_analyst_exports_without_personal_data_unless_asked(system, salesbus, unique, tmp_path):
    customer, email = f"journey-bi-{unique}", f"bi-{unique}@example.hr"
    confirmed(system, checkout(system, customer, CARD, email))
    phone = delivery(email)["phone"]

    code, out = salesbus("export", "OrderPlaced", "--out", str(tmp_path / "safe.csv"),
                         "--where", f"customer_id={customer}")
    assert code == 0, out
    assert "card tokens left out (always)" in out and "personal contact data left out" in out
    safe = (tmp_path / "safe.csv").read_text()
    assert customer in safe and "Split" in safe, "the order itself is exported"
    for secret in (email, phone, "tok_visa_approved", "card_token", "Goods in"):
        assert secret not in safe, f"the analyst's file holds {secret}"

    code, out = salesbus("export", "OrderPlaced", "--out", str(tmp_path / "full.csv"),
                         "--where", f"customer_id={customer}", "--include-contact-data")
    assert code == 0, out
    full = (tmp_path / "full.csv").read_text()
    assert email in full and phone in full, "--include-contact-data includes them"
    assert "tok_visa_approved" not in full and "card_token" not in full, "a card token is never exported"


# 7 ------------------------------------------------------------------------------------------------
def test_operator_finds_the_dead_letter_of_one_bad_record(system, salesbus, bus, unique):
    key = f"journey-bad-{unique}"
    assert bus.publish_raw("OrderPlaced", b"{this is not an order", key=key)

    def dead_letters() -> list[dict]:
        code, out = salesbus("dlq", "list", "OrderPlaced", "--json")
        assert code == 0, out
        [topic] = json.loads(out)["topics"]
        return [d for d in topic["dead_letters"] if d["key"] == key]
    found = wait_until(dead_letters, timeout=WAIT, interval=1, message="the bad record on OrderPlaced.DLQ")
    assert {d["group"] for d in found} >= {"orders"}, found   # every consumer of OrderPlaced sets it aside
    assert all(d["original"]["topic"] == "OrderPlaced" and d["reason"] for d in found), found
