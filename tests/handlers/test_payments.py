"""Payments on a database of its own: orders delivered through the real inbox and handler, the
card gateway one of the test's own (a SimulatedGateway on a fresh state file), outcomes read from
the outbox, money checked at the gateway, in the ledger and through the API in-process. (An order
charged end to end through the broker is tests/integration/test_payments.py.)"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from schemas import Money, OrderPlaced, deterministic_id
from services.payments.simulated_gateway import SimulatedGateway
from tests.builders import ACCOUNT, card
from tests.builders import payment_order as order

OUTCOMES = ("PaymentVerified", "PaymentDeclined")
@pytest.fixture
def gateway(payments) -> SimulatedGateway:
    """The gateway the handler charges through (the tier's default dependency)."""
    return payments.deps["gateway"]


@pytest.fixture
def operator(payments):
    with payments.api("operator", "ops-1") as client:
        yield client


def outcomes(emitted) -> list:
    return [e for e in emitted if e.topic in OUTCOMES]


def the_outcome(payments, event: OrderPlaced):
    """Deliver the order (and retry it if it was parked): its one payment decision."""
    emitted = payments.deliver(event)
    emitted += payments.retry_parked()
    found = outcomes(emitted)
    assert len(found) == 1, found
    assert found[0].id == deterministic_id(event.order_id, "payment")
    return found[0]


def open_account(operator, customer_id: str, limit: str, terms: int = 30) -> dict:
    r = operator.put(f"/accounts/{customer_id}", json={"credit_limit": limit, "currency": "EUR",
                                                       "payment_terms_days": terms, "status": "active"})
    assert r.status_code == 201, r.text
    return r.json()


# --- card -----------------------------------------------------------------------------------------

def test_card_approved_is_charged_and_verified(payments, gateway):
    ev = the_outcome(payments, order("o-1", "c-1", card("tok_visa_approved")))
    assert ev.topic == "PaymentVerified"
    assert ev.data["amount"] == {"amount": "24.50", "currency": "EUR"}
    assert ev.data["method"] == "card" and ev.data["charge_reference"].startswith("auth_")
    assert gateway.charges_for("o-1") == 1


@pytest.mark.parametrize("token,reason", [("tok_insufficient_funds", "insufficient_funds"),
                                          ("tok_fraud_suspected", "suspected_fraud")])
def test_card_declined_with_reason_and_not_charged(payments, gateway, token, reason):
    ev = the_outcome(payments, order("o-1", "c-1", card(token)))
    assert ev.topic == "PaymentDeclined"
    assert ev.data["reason_code"] == reason and ev.data["method"] == "card" and ev.data["message"]
    assert gateway.charges_for("o-1") == 0


def test_gateway_timeout_is_retried_and_charged_exactly_once(payments, gateway):
    # (the batch's careful pass runs the handler again at once: the retry is within this delivery)
    ev = the_outcome(payments, order("o-1", "c-1", card("tok_timeout_once"), total="24.50"))
    assert ev.topic == "PaymentVerified"
    assert gateway.charges_for("o-1") == 1
    # the reference we announced is the one charge the gateway made (its first, lost answer)
    again = gateway.authorise("tok_timeout_once", Money.model_validate(ev.data["amount"]), "o-1")
    assert ev.data["charge_reference"] == again.authorisation_id


# --- supplier accounts ----------------------------------------------------------------------------

def test_account_within_limit_raises_balance_and_books_balanced_entries(payments, operator):
    customer = "c-1"
    opened = open_account(operator, customer, "1000.00", terms=30)
    assert (opened["open_balance"], opened["available_credit"]) == ("0.00", "1000.00")
    changed = payments.outbox("SupplierAccountChanged", customer)
    assert [(e.data["credit_limit"], e.data["status"]) for e in changed] == [("1000.00", "active")]

    ev = the_outcome(payments, order("o-1", customer, ACCOUNT, lines=(("BULB-60W", 2, "150.25"),)))
    assert ev.topic == "PaymentVerified", ev
    assert ev.data["method"] == "account" and ev.data["amount"]["amount"] == "300.50"

    account = operator.get(f"/accounts/{customer}").json()
    assert (account["open_balance"], account["available_credit"]) == ("300.50", "699.50")
    [entry] = account["recent_entries"]
    assert (entry["side"], entry["amount"], entry["order_id"]) == ("debit", "300.50", "o-1")
    assert entry["journal_id"] == ev.data["charge_reference"]
    assert entry["due_on"] == (payments.clock.now() + timedelta(days=30)).date().isoformat()
    journal = payments.query("SELECT account, side, amount FROM ledger_entry WHERE journal_id = %s ORDER BY side",
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


def test_an_account_that_comes_to_owe_is_put_on_the_overdue_workers_list_once(payments, operator):
    # add_invoice_and_announce sets next_overdue_check_at in its balance UPDATE (it was a second statement):
    # set when the account first owes, left alone by later invoices (the worker keeps it after that)
    customer = "c-1"
    open_account(operator, customer, "1000.00", terms=30)
    check = "SELECT next_overdue_check_at AS at, open_balance FROM supplier_account WHERE customer_id = %s"
    assert payments.query(check, (customer,))[0]["at"] is None
    the_outcome(payments, order("o-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "10.00"),)))
    [first] = payments.query(check, (customer,))
    assert first["at"] is not None and first["open_balance"] == Decimal("10.00")
    payments.clock.advance(timedelta(hours=3))
    the_outcome(payments, order("o-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "5.00"),)))
    [second] = payments.query(check, (customer,))
    assert second["at"] == first["at"] and second["open_balance"] == Decimal("15.00")


def test_invoice_numbers_drawn_with_the_insert_read_as_next_number_writes_them(payments, operator):
    # insert_invoice draws the number in its own statement (it was next_number, then the INSERT):
    # the same gap-free sequence and the same format as next_number's f"{series}-{year}-{seq:06d}",
    # past six digits too
    from services.payments import money_store
    customer = "c-1"
    open_account(operator, customer, "100000.00", terms=30)
    the_outcome(payments, order("o-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "10.00"),)))
    the_outcome(payments, order("o-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "10.00"),)))
    year = payments.clock.now().year
    payments.query("UPDATE document_counter SET last_number = 999999 WHERE series = 'INV' RETURNING 1")
    the_outcome(payments, order("o-3", customer, ACCOUNT, lines=(("BULB-60W", 1, "10.00"),)))
    rows = payments.query("SELECT invoice_number, seq FROM invoice ORDER BY seq")
    assert [(r["invoice_number"], r["seq"]) for r in rows] == [
        (f"INV-{year}-000001", 1), (f"INV-{year}-000002", 2), (f"INV-{year}-1000000", 1000000)]
    with psycopg.connect(payments.url) as conn:   # next_number's own format, for the next one
        conn.row_factory = psycopg.rows.dict_row
        assert money_store.next_number(conn, "INV", year) == (f"INV-{year}-1000001", 1000001)
        conn.rollback()


def test_account_over_limit_is_declined_and_not_charged(payments, operator):
    customer = "c-1"
    open_account(operator, customer, "100.00")
    ev = the_outcome(payments, order("o-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "100.01"),)))
    assert ev.topic == "PaymentDeclined"
    assert ev.data["reason_code"] == "credit_limit_exceeded" and "100.01 EUR" in ev.data["message"]
    account = operator.get(f"/accounts/{customer}").json()
    assert account["open_balance"] == "0.00" and account["recent_entries"] == []
    assert not payments.query("SELECT 1 FROM ledger_entry WHERE order_id = 'o-1'")


# --- orders published by upstream systems -----------------------------------------------------------

@pytest.mark.parametrize("case,reason,says", [
    ("wrong_total", "invalid_order", "does not match the sum of the lines"),
    ("negative_quantity", "invalid_order", "quantity -3"),
    ("unsupported_currency", "currency_mismatch", "CHF are not accepted"),
])
def test_upstream_order_that_does_not_add_up_is_declined_never_charged(payments, gateway, case, reason, says):
    ok = card("tok_visa_approved")  # the card would pay: only the order's own faults may decline it
    event = {
        "wrong_total": order("o-1", "c-1", ok, lines=(("BULB-60W", 9, "10.00"),), total="100.00"),
        "negative_quantity": order("o-1", "c-1", ok, lines=(("BULB-60W", 5, "10.00"), ("LAMP-1", -3, "10.00"))),
        "unsupported_currency": order("o-1", "c-1", ok, currency="CHF"),
    }[case]
    ev = the_outcome(payments, event)
    assert ev.topic == "PaymentDeclined"
    assert ev.data["reason_code"] == reason and says in ev.data["message"], ev.data
    assert gateway.charges_for("o-1") == 0


# --- at most once per order -------------------------------------------------------------------------

@pytest.mark.parametrize("payment", [card("tok_visa_approved"), ACCOUNT], ids=["card", "account"])
def test_same_order_published_twice_with_new_event_ids_is_charged_once(payments, operator, gateway, payment):
    customer, order_id = "c-1", "o-1"
    if payment == ACCOUNT:
        open_account(operator, customer, "500.00")
    first, second = "ev-first", "ev-second"
    found = outcomes(payments.deliver(order(order_id, customer, payment), event_id=first)
                     + payments.deliver(order(order_id, customer, payment), event_id=second))
    assert [e.topic for e in found] == ["PaymentVerified"]
    # the second copy was skipped, not dead-lettered by a clash further down
    assert {payments.inbox_outcome(first), payments.inbox_outcome(second)} == {"handled"}
    if payment == ACCOUNT:
        assert operator.get(f"/accounts/{customer}").json()["open_balance"] == "24.50"
        assert len(payments.query("SELECT 1 FROM ledger_entry WHERE order_id = %s", (order_id,))) == 2
    else:
        assert gateway.charges_for(order_id) == 1


class CountingGateway:
    def __init__(self, inner: SimulatedGateway):
        self.inner, self.calls = inner, 0

    def authorise(self, token, amount, idempotency_key):
        self.calls += 1
        return self.inner.authorise(token, amount, idempotency_key)


@pytest.mark.parametrize("payment", [card("tok_visa_approved"), ACCOUNT], ids=["card", "account"])
def test_concurrent_replicas_with_the_same_order_charge_it_once(payments, operator, tmp_path, payment):
    """Two replicas, two transactions, the same order: the second waits on the first's claim and
    then skips, without calling the gateway or touching the account (regression: a claim taken
    after charging let both replicas charge)."""
    customer, order_id = "c-1", "o-1"
    if payment == ACCOUNT:
        open_account(operator, customer, "500.00")
    counting = CountingGateway(SimulatedGateway(tmp_path / "gw.sqlite"))
    handler = payments.service.handlers["OrderPlaced"]
    first_claimed, emitted, errors = threading.Event(), {}, []

    def replica(name: str) -> None:
        try:
            if name == "second":
                first_claimed.wait(10)
            with payments.uow() as uow:
                payments.call(handler, order(order_id, customer, payment), uow, gateway=counting)
                emitted[name] = [r.topic for r in uow.emitted]
                if name == "first":
                    first_claimed.set()
                    time.sleep(1.0)  # hold the claim uncommitted while the second replica arrives
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # an account charge is also invoiced and moves the account (one of each, from the first only)
    first = ["InvoiceIssued", "SupplierAccountChanged", "PaymentVerified"] if payment == ACCOUNT else ["PaymentVerified"]
    assert emitted == {"first": first, "second": []}
    if payment == ACCOUNT:
        assert operator.get(f"/accounts/{customer}").json()["open_balance"] == "24.50"
    else:
        assert counting.calls == 1


# --- account API ------------------------------------------------------------------------------------

def test_account_api_roles(payments, operator):
    mine, theirs = "c-mine", "c-theirs"
    open_account(operator, mine, "250.00")
    open_account(operator, theirs, "900.00")
    with payments.api("customer", mine) as customer:
        assert customer.get(f"/accounts/{mine}").json()["credit_limit"] == "250.00"
        assert customer.get(f"/accounts/{theirs}").status_code == 403
        assert customer.put(f"/accounts/{mine}", json={"credit_limit": "99999.00", "currency": "EUR",
                                                       "payment_terms_days": 90}).status_code == 403
        assert customer.get("/ledger/balance").status_code == 403
    with payments.api("salesperson", "sp-1") as salesperson:
        assert salesperson.get(f"/accounts/{mine}").status_code == 403
    assert operator.get(f"/accounts/{mine}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert operator.get("/accounts/c-none").status_code == 404
    # money as decimal strings only; currencies we sell in only
    bad = [{"credit_limit": 250.5, "currency": "EUR", "payment_terms_days": 30},
           {"credit_limit": "250.005", "currency": "EUR", "payment_terms_days": 30},
           {"credit_limit": "-1.00", "currency": "EUR", "payment_terms_days": 30},
           ]
    for body in bad:
        assert operator.put(f"/accounts/{mine}", json=body).status_code == 422, body
    not_sold = {"credit_limit": "250.00", "currency": "CHF", "payment_terms_days": 30}
    assert operator.put(f"/accounts/{mine}", json=not_sold).status_code == 409  # not the schema's: the business's
    r = operator.put(f"/accounts/{mine}", json={"credit_limit": "300.00", "currency": "EUR",
                                                "payment_terms_days": 60, "status": "suspended"})
    assert r.status_code == 200 and (r.json()["credit_limit"], r.json()["status"]) == ("300.00", "suspended")
