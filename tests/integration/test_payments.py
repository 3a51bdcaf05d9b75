"""Payments on the real stack: orders published straight to the bus (as an upstream system
does), outcomes read back from the broker, money checked at the gateway and in the ledger."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from runtime import db
from runtime.clock import WallClock
from runtime.config import settings
from runtime.tap import tap
from runtime.uow import unit_of_work
from schemas import Money, OrderPlaced, deterministic_id
from services.payments.handlers import handle_order_placed
from services.payments.simulated_gateway import SimulatedGateway, state_path
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
OUTCOMES = ["PaymentVerified", "PaymentDeclined"]


@pytest.fixture(scope="module")
def payments(harness):
    harness.start("payments")
    return harness


@pytest.fixture(scope="module")
def gateway() -> SimulatedGateway:
    """The simulated gateway's own memory: the same state file the service charges through."""
    return SimulatedGateway(state_path(settings()))


@pytest.fixture(scope="module")
def operator(payments):
    with payments.client("payments", "operator", "ops-1") as client:
        yield client


def order(order_id: str, customer_id: str, payment: dict, lines=(("BULB-60W", 2, "12.25"),),
          total: str | None = None, currency: str = "EUR") -> OrderPlaced:
    total = total or str(sum(Decimal(price) * qty for _, qty, price in lines))
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "channel": "edi",
        "lines": [{"sku": sku, "name": sku.title(), "quantity": qty,
                   "unit_price": {"amount": price, "currency": currency}} for sku, qty, price in lines],
        "total": {"amount": total, "currency": currency},
        "delivery": {"recipient": "Goods in", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
                     "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"},
        "payment": payment, "placed_at": datetime.now(timezone.utc)})


def card(token: str) -> dict:
    return {"mode": "card", "card_token": token}


ACCOUNT = {"mode": "account"}


def query(cfg, sql: str, params=()) -> list[dict]:
    with psycopg.connect(cfg.database_for("payments"), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def outcomes(cfg, order_id: str) -> list[dict]:
    """PaymentVerified/PaymentDeclined on the broker for this order (CloudEvent dicts)."""
    return [{**r.event(), "topic": r.topic}
            for r in tap(cfg.kafka_common(), OUTCOMES, follow=False, idle_exit_s=1.0, keys={order_id})]


def settled(cfg, order_id: str, *event_ids: str) -> list[dict]:
    """Wait until payments consumed these events, decided the order and published what it emitted;
    then return what is on the broker for the order."""
    wait_until(lambda: len(query(cfg, "SELECT 1 FROM inbox WHERE event_id = ANY(%s)", (list(event_ids),)))
               == len(event_ids), timeout=60, message=f"payments to consume {event_ids}")
    wait_until(lambda: query(cfg, "SELECT 1 FROM payment WHERE order_id = %s AND status <> 'claimed'", (order_id,))
               and not query(cfg, "SELECT 1 FROM outbox WHERE key = %s AND published_at IS NULL", (order_id,)),
               timeout=60, message=f"the payment decision for {order_id} to be published")
    return outcomes(cfg, order_id)


def the_outcome(cfg, bus, event: OrderPlaced) -> dict:
    found = settled(cfg, event.order_id, bus.publish(event))
    assert len(found) == 1, found
    assert found[0]["id"] == deterministic_id(event.order_id, "payment")
    return found[0]


def open_account(operator, customer_id: str, limit: str, terms: int = 30) -> dict:
    r = operator.put(f"/accounts/{customer_id}", json={"credit_limit": limit, "currency": "EUR",
                                                       "payment_terms_days": terms, "status": "active"})
    assert r.status_code == 201, r.text
    return r.json()


# --- card -----------------------------------------------------------------------------------------

def test_card_approved_is_charged_and_verified(cfg, bus, payments, gateway, unique):
    ev = the_outcome(cfg, bus, order(f"o-{unique}", f"c-{unique}", card("tok_visa_approved")))
    assert ev["topic"] == "PaymentVerified"
    assert ev["data"]["amount"] == {"amount": "24.50", "currency": "EUR"}
    assert ev["data"]["method"] == "card" and ev["data"]["charge_reference"].startswith("auth_")
    assert gateway.charges_for(f"o-{unique}") == 1


@pytest.mark.parametrize("token,reason", [("tok_insufficient_funds", "insufficient_funds"),
                                          ("tok_fraud_suspected", "suspected_fraud")])
def test_card_declined_with_reason_and_not_charged(cfg, bus, payments, gateway, unique, token, reason):
    ev = the_outcome(cfg, bus, order(f"o-{unique}", f"c-{unique}", card(token)))
    assert ev["topic"] == "PaymentDeclined"
    assert ev["data"]["reason_code"] == reason and ev["data"]["method"] == "card" and ev["data"]["message"]
    assert gateway.charges_for(f"o-{unique}") == 0


def test_gateway_timeout_is_retried_and_charged_exactly_once(cfg, bus, payments, gateway, unique):
    ev = the_outcome(cfg, bus, order(f"o-{unique}", f"c-{unique}", card("tok_timeout_once"), total="24.50"))
    assert ev["topic"] == "PaymentVerified"
    assert gateway.charges_for(f"o-{unique}") == 1
    # the reference we announced is the one charge the gateway made (its first, lost answer)
    again = gateway.authorise("tok_timeout_once", Money.model_validate(ev["data"]["amount"]), f"o-{unique}")
    assert ev["data"]["charge_reference"] == again.authorisation_id


# --- supplier accounts ----------------------------------------------------------------------------

def test_account_within_limit_raises_balance_and_books_balanced_entries(cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    opened = open_account(operator, customer, "1000.00", terms=30)
    assert (opened["open_balance"], opened["available_credit"]) == ("0.00", "1000.00")
    changed = [r.event() for r in tap(cfg.kafka_common(), ["SupplierAccountChanged"], follow=False,
                                      idle_exit_s=1.0, keys={customer})]
    assert [(e["data"]["credit_limit"], e["data"]["status"]) for e in changed] == [("1000.00", "active")]

    ev = the_outcome(cfg, bus, order(f"o-{unique}", customer, ACCOUNT, lines=(("BULB-60W", 2, "150.25"),)))
    assert ev["topic"] == "PaymentVerified", ev
    assert ev["data"]["method"] == "account" and ev["data"]["amount"]["amount"] == "300.50"

    account = operator.get(f"/accounts/{customer}").json()
    assert (account["open_balance"], account["available_credit"]) == ("300.50", "699.50")
    [entry] = account["recent_entries"]
    assert (entry["side"], entry["amount"], entry["order_id"]) == ("debit", "300.50", f"o-{unique}")
    assert entry["journal_id"] == ev["data"]["charge_reference"]
    assert entry["due_on"] == (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    journal = query(cfg, "SELECT account, side, amount FROM ledger_entry WHERE journal_id = %s ORDER BY side",
                    (entry["journal_id"],))
    assert [(j["account"], j["side"], j["amount"]) for j in journal] == [
        ("revenue", "credit", Decimal("300.50")), (f"receivable:{customer}", "debit", Decimal("300.50"))]
    books = operator.get("/ledger/balance").json()
    assert books["balanced"] is True, books
    eur = next(c for c in books["currencies"] if c["currency"] == "EUR")
    assert eur["debits"] == eur["credits"] and Decimal(eur["debits"]) >= Decimal("300.50")

    # the balance is owed in EUR: the account's currency cannot change under it
    r = operator.put(f"/accounts/{customer}", json={"credit_limit": "1000.00", "currency": "USD",
                                                    "payment_terms_days": 30, "status": "active"})
    assert r.status_code == 409, r.text


def test_account_over_limit_is_declined_and_not_charged(cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "100.00")
    ev = the_outcome(cfg, bus, order(f"o-{unique}", customer, ACCOUNT, lines=(("BULB-60W", 1, "100.01"),)))
    assert ev["topic"] == "PaymentDeclined"
    assert ev["data"]["reason_code"] == "credit_limit_exceeded" and "100.01 EUR" in ev["data"]["message"]
    account = operator.get(f"/accounts/{customer}").json()
    assert account["open_balance"] == "0.00" and account["recent_entries"] == []
    assert not query(cfg, "SELECT 1 FROM ledger_entry WHERE order_id = %s", (f"o-{unique}",))


# --- orders published by upstream systems -----------------------------------------------------------

@pytest.mark.parametrize("case,reason,says", [
    ("wrong_total", "invalid_order", "does not match the sum of the lines"),
    ("negative_quantity", "invalid_order", "quantity -3"),
    ("unsupported_currency", "currency_mismatch", "CHF are not accepted"),
])
def test_upstream_order_that_does_not_add_up_is_declined_never_charged(cfg, bus, payments, gateway, unique,
                                                                        case, reason, says):
    ok = card("tok_visa_approved")  # the card would pay: only the order's own faults may decline it
    event = {
        "wrong_total": order(f"o-{unique}", f"c-{unique}", ok, lines=(("BULB-60W", 9, "10.00"),), total="100.00"),
        "negative_quantity": order(f"o-{unique}", f"c-{unique}", ok,
                                   lines=(("BULB-60W", 5, "10.00"), ("LAMP-1", -3, "10.00"))),
        "unsupported_currency": order(f"o-{unique}", f"c-{unique}", ok, currency="CHF"),
    }[case]
    ev = the_outcome(cfg, bus, event)
    assert ev["topic"] == "PaymentDeclined"
    assert ev["data"]["reason_code"] == reason and says in ev["data"]["message"], ev["data"]
    assert gateway.charges_for(f"o-{unique}") == 0


# --- at most once per order -------------------------------------------------------------------------

@pytest.mark.parametrize("payment", [card("tok_visa_approved"), ACCOUNT], ids=["card", "account"])
def test_same_order_published_twice_with_new_event_ids_is_charged_once(cfg, bus, payments, operator, gateway,
                                                                       unique, payment):
    customer, order_id = f"c-{unique}", f"o-{unique}"
    if payment == ACCOUNT:
        open_account(operator, customer, "500.00")
    first, second = bus.publish(order(order_id, customer, payment)), bus.publish(order(order_id, customer, payment))
    assert first != second
    found = settled(cfg, order_id, first, second)
    assert [e["topic"] for e in found] == ["PaymentVerified"]
    # the second copy was skipped, not dead-lettered by a clash further down
    assert {r["outcome"] for r in query(cfg, "SELECT outcome FROM inbox WHERE event_id = ANY(%s)",
                                        ([first, second],))} == {"handled"}
    if payment == ACCOUNT:
        assert operator.get(f"/accounts/{customer}").json()["open_balance"] == "24.50"
        assert len(query(cfg, "SELECT 1 FROM ledger_entry WHERE order_id = %s", (order_id,))) == 2
    else:
        assert gateway.charges_for(order_id) == 1


class CountingGateway:
    def __init__(self, inner: SimulatedGateway):
        self.inner, self.calls = inner, 0

    def authorise(self, token, amount, idempotency_key):
        self.calls += 1
        return self.inner.authorise(token, amount, idempotency_key)


@pytest.mark.parametrize("payment", [card("tok_visa_approved"), ACCOUNT], ids=["card", "account"])
def test_concurrent_replicas_with_the_same_order_charge_it_once(cfg, payments, operator, unique, tmp_path, payment):
    """Two replicas, two transactions, the same order: the second waits on the first's claim and
    then skips, without calling the gateway or touching the account (regression: a claim taken
    after charging let both replicas charge)."""
    customer, order_id = f"c-{unique}", f"o-{unique}"
    if payment == ACCOUNT:
        open_account(operator, customer, "500.00")
    counting = CountingGateway(SimulatedGateway(tmp_path / "gw.sqlite"))
    pool = db.make_pool(cfg.database_for("payments"), max_size=2, name="payments-test")
    first_claimed, emitted, errors = threading.Event(), {}, []

    def replica(name: str) -> None:
        try:
            if name == "second":
                first_claimed.wait(10)
            with unit_of_work(pool, source="payments", clock=WallClock()) as uow:
                handle_order_placed(order(order_id, customer, payment), uow, gateway=counting)
                emitted[name] = [r.topic for r in uow.emitted]
                if name == "first":
                    first_claimed.set()
                    time.sleep(1.0)  # hold the claim uncommitted while the second replica arrives
        except Exception as exc:  # surfaced below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=replica, args=(n,)) for n in ("first", "second")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        pool.close()
    assert not errors, errors
    assert emitted == {"first": ["PaymentVerified"], "second": []}
    if payment == ACCOUNT:
        assert operator.get(f"/accounts/{customer}").json()["open_balance"] == "24.50"
    else:
        assert counting.calls == 1


# --- account API ------------------------------------------------------------------------------------

def test_account_api_roles(payments, operator, unique):
    mine, theirs = f"c-mine-{unique}", f"c-theirs-{unique}"
    open_account(operator, mine, "250.00")
    open_account(operator, theirs, "900.00")
    with payments.client("payments", "customer", mine) as customer:
        assert customer.get(f"/accounts/{mine}").json()["credit_limit"] == "250.00"
        assert customer.get(f"/accounts/{theirs}").status_code == 403
        assert customer.put(f"/accounts/{mine}", json={"credit_limit": "99999.00", "currency": "EUR",
                                                       "payment_terms_days": 90}).status_code == 403
        assert customer.get("/ledger/balance").status_code == 403
    with payments.client("payments", "salesperson", "sp-1") as salesperson:
        assert salesperson.get(f"/accounts/{mine}").status_code == 403
    assert operator.get(f"/accounts/{mine}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert operator.get(f"/accounts/c-none-{unique}").status_code == 404
    # money as decimal strings only; currencies we sell in only
    bad = [{"credit_limit": 250.5, "currency": "EUR", "payment_terms_days": 30},
           {"credit_limit": "250.005", "currency": "EUR", "payment_terms_days": 30},
           {"credit_limit": "-1.00", "currency": "EUR", "payment_terms_days": 30},
           {"credit_limit": "250.00", "currency": "CHF", "payment_terms_days": 30}]
    for body in bad:
        assert operator.put(f"/accounts/{mine}", json=body).status_code == 422, body
    r = operator.put(f"/accounts/{mine}", json={"credit_limit": "300.00", "currency": "EUR",
                                                "payment_terms_days": 60, "status": "suspended"})
    assert r.status_code == 200 and (r.json()["credit_limit"], r.json()["status"]) == ("300.00", "suspended")
