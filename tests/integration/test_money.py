"""Money on supplier accounts on the real stack (embedded broker and PostgreSQL): invoices,
payments received over HTTP and from an upstream feed, refunds and credit notes for cancelled
orders (retried and redelivered), overdue reminders and holds, statements, ageing and the
trial balance. Orders and cancellations are published straight to the bus, as the orders
service and upstream systems do."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import dict_row

from runtime import db
from runtime.clock import OffsetClock
from runtime.tap import tap
from runtime.uow import unit_of_work
from schemas import Money, OrderCancelled, PaymentReceived, deterministic_id
from services.payments import commands
from services.payments.books import due_on
from services.payments.overdue import OverduePolicy, run_due
from services.payments.simulated_gateway import SimulatedGateway, state_path
from tests.conftest import wait_until
from tests.builders import ACCOUNT, card
from tests.builders import payment_order as order

# the thorough money tier runs in make test-slow; make test keeps tests/e2e/test_money_flows.py
pytestmark = [pytest.mark.integration, pytest.mark.slow]
WAIT = 60


@pytest.fixture(scope="module")
def payments(harness):
    harness.start("payments")
    return harness


@pytest.fixture(scope="module")
def operator(payments):
    with payments.client("payments", "operator", "ops-money") as client:
        yield client


@pytest.fixture(scope="module")
def gateway(cfg) -> SimulatedGateway:
    """The simulated gateway's own memory: the state file the Settings given to the service name."""
    return SimulatedGateway(state_path(cfg))


def query(cfg, sql: str, params=()) -> list[dict]:
    with psycopg.connect(cfg.database_for("payments"), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def events(cfg, topic: str, key: str) -> list[dict]:
    return [r.event() for r in tap(cfg.kafka_common(), [topic], follow=False, idle_exit_s=1.0, keys={key})]


def published(cfg, *event_ids: str) -> None:
    """Payments consumed these events and published everything it emitted."""
    wait_until(lambda: len(query(cfg, "SELECT 1 FROM inbox WHERE event_id = ANY(%s)", (list(event_ids),)))
               == len(event_ids), timeout=WAIT, message=f"payments to consume {event_ids}")
    wait_until(lambda: not query(cfg, "SELECT 1 FROM outbox WHERE published_at IS NULL AND failed_at IS NULL"),
               timeout=WAIT, message="payments' outbox to drain")


def decided(cfg, bus, event) -> dict:
    """Publish an order and wait for its payment decision; returns the payment row."""
    published(cfg, bus.publish(event))
    [row] = query(cfg, "SELECT * FROM payment WHERE order_id = %s", (event.order_id,))
    return row


def open_account(operator, customer_id: str, limit: str, terms: int = 30, **extra) -> dict:
    r = operator.put(f"/accounts/{customer_id}", json={"credit_limit": limit, "currency": "EUR",
                                                       "payment_terms_days": terms, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def account(operator, customer_id: str) -> dict:
    return operator.get(f"/accounts/{customer_id}").json()


def pay(operator, customer_id: str, reference: str, amount: str, **extra):
    return operator.post(f"/accounts/{customer_id}/payments",
                         json={"payer_reference": reference, "amount": amount, "currency": "EUR", **extra})


def cancel(order_id: str, customer_id: str, reason: str = "customer changed their mind") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id=customer_id, reason=reason,
                          cancelled_at=datetime.now(timezone.utc))


def books_balanced(operator) -> None:
    trial = operator.get("/ledger/trial-balance").json()
    assert trial["balanced"] is True and set(trial["totals"].values()) <= {"0.00", "0"}, trial
    check = operator.get("/ledger/balance").json()
    assert check["balanced"] is True, check


# --- invoices --------------------------------------------------------------------------------------------------

def test_an_account_charge_issues_an_invoice_retrievable_by_its_customer_only(cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "1000.00", terms=30, terms_kind="eom", time_zone="Europe/Warsaw",
                 billing_email="ap@example.pl", language="pl")
    paid = decided(cfg, bus, order(f"o-{unique}", customer, ACCOUNT, lines=(("BULB-60W", 4, "12.50"),)))
    assert paid["status"] == "verified"

    [issued] = events(cfg, "InvoiceIssued", customer)
    data = issued["data"]
    today = payments.clock.now().astimezone(ZoneInfo("Europe/Warsaw")).date()  # the services' clock
    assert data["invoice_number"].startswith(f"INV-{today.year}-")
    assert (data["issue_date"], data["due_date"]) == (today.isoformat(), due_on(today, 30, "eom").isoformat())
    assert data["total"] == {"amount": "50.00", "currency": "EUR"} and data["order_id"] == f"o-{unique}"
    assert (data["billing_email"], data["language"], data["time_zone"]) == ("ap@example.pl", "pl", "Europe/Warsaw")
    assert issued["id"] == deterministic_id("InvoiceIssued", data["invoice_number"])

    number = data["invoice_number"]
    got = operator.get(f"/invoices/{number}").json()
    assert (got["status"], got["open_amount"], got["lines"][0]["quantity"]) == ("open", "50.00", 4)
    with payments.client("payments", "customer", customer) as mine:
        assert mine.get(f"/invoices/{number}").status_code == 200
        assert [i["invoice_number"] for i in mine.get("/invoices").json()["items"]] == [number]
    with payments.client("payments", "customer", f"other-{unique}") as other:
        assert other.get(f"/invoices/{number}").status_code == 404
        assert other.get(f"/invoices?customer_id={customer}").status_code == 403
        assert other.get("/invoices").json()["items"] == []
    changed = [e["data"] for e in events(cfg, "SupplierAccountChanged", customer)]
    assert [(c["change"], c["open_balance"], c["available_credit"]) for c in changed] == [
        ("opened", "0.00", "1000.00"), ("invoice", "50.00", "950.00")]


def test_invoice_numbers_are_gap_free_even_when_an_issuing_transaction_rolls_back(cfg, payments, operator, gateway,
                                                                                  unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "100000.00")
    pool = db.make_pool(cfg.database_for("payments"), max_size=2, name="money-test")
    clock = OffsetClock()

    def charge(order_id: str, fail: bool = False) -> None:
        from services.payments.handlers import on_order_placed
        with unit_of_work(pool, source="payments", clock=clock) as uow:
            on_order_placed(order(order_id, customer, ACCOUNT), uow, gateway=gateway,
                            currencies=cfg.supported_currencies())
            if fail:
                raise RuntimeError("crash after the invoice was numbered")

    try:
        charge(f"o-{unique}-1")
        with pytest.raises(RuntimeError):
            charge(f"o-{unique}-2", fail=True)
        threads = [threading.Thread(target=charge, args=(f"o-{unique}-{n}",)) for n in (3, 4, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        pool.close()
    for year in {r["year"] for r in query(cfg, "SELECT DISTINCT year FROM invoice")}:
        seqs = [r["seq"] for r in query(cfg, "SELECT seq FROM invoice WHERE year = %s ORDER BY seq", (year,))]
        assert seqs == list(range(1, len(seqs) + 1)), f"a {year} number was skipped or used twice"
    mine = query(cfg, "SELECT order_id FROM invoice WHERE customer_id = %s", (customer,))
    assert sorted(r["order_id"] for r in mine) == [f"o-{unique}-{n}" for n in (1, 3, 4, 5)]


# --- payments received -----------------------------------------------------------------------------------------

def test_a_customer_at_the_credit_limit_pays_and_the_next_account_order_is_accepted(cfg, bus, payments, operator,
                                                                                    unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "100.00")
    assert decided(cfg, bus, order(f"o-{unique}-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "100.00"),)))[
        "status"] == "verified"
    refused = decided(cfg, bus, order(f"o-{unique}-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "10.00"),)))
    assert (refused["status"], refused["reason_code"]) == ("declined", "credit_limit_exceeded")

    r = pay(operator, customer, f"bank-{unique}", "60.00")
    assert r.status_code == 201, r.text
    assert (r.json()["amount"], r.json()["unapplied"]) == ("60.00", "0.00")
    after = account(operator, customer)
    assert (after["open_balance"], after["available_credit"]) == ("40.00", "60.00")
    # the same bank reference again is the same payment: nothing moves
    again = pay(operator, customer, f"bank-{unique}", "60.00")
    assert again.status_code == 200 and again.json()["payment_id"] == r.json()["payment_id"]
    assert account(operator, customer)["open_balance"] == "40.00"
    assert pay(operator, customer, f"bank-{unique}", "61.00").status_code == 409
    assert pay(operator, customer, f"bank-{unique}-usd", "5.00", currency="USD").status_code == 409  # the account's
    assert pay(operator, customer, f"bank-{unique}-zero", "0.00").status_code == 422               # the schema's
    assert pay(operator, f"c-none-{unique}", f"bank-{unique}-x", "5.00").status_code == 404
    with payments.client("payments", "customer", customer) as mine:
        assert pay(mine, customer, f"bank-{unique}-self", "1.00").status_code == 403

    accepted = decided(cfg, bus, order(f"o-{unique}-3", customer, ACCOUNT, lines=(("BULB-60W", 1, "50.00"),)))
    assert accepted["status"] == "verified"
    changes = [e["data"] for e in events(cfg, "SupplierAccountChanged", customer)]
    assert [(c["change"], c["open_balance"]) for c in changes] == [
        ("opened", "0.00"), ("invoice", "100.00"), ("payment", "40.00"), ("invoice", "90.00")]
    books_balanced(operator)


def test_an_upstream_payment_is_recorded_once_allocated_to_the_named_invoice_and_an_overpayment_kept_as_credit(
        cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "1000.00")
    for n in (1, 2):
        decided(cfg, bus, order(f"o-{unique}-{n}", customer, ACCOUNT, lines=(("BULB-60W", 1, f"{n}0.00"),)))
    first, second = sorted(query(cfg, "SELECT invoice_number FROM invoice WHERE customer_id = %s", (customer,)),
                           key=lambda r: r["invoice_number"])
    feed = PaymentReceived(payer_reference=f"erp-{unique}", customer_id=customer,
                           amount={"amount": "25.00", "currency": "EUR"}, received_on=payments.clock.now().date(),
                           invoice_numbers=[second["invoice_number"]])
    # the feed publishes it twice with new event ids, and once more redelivered with the same id
    ids = [bus.publish(feed), bus.publish(feed)]
    bus.publish(feed, event_id=ids[0])
    published(cfg, *ids)
    [row] = query(cfg, "SELECT * FROM payment_received WHERE payer_reference = %s", (f"erp-{unique}",))
    assert row["amount"] == Decimal("25.00") and row["unapplied"] == Decimal("0.00")
    second_view = operator.get(f"/invoices/{second['invoice_number']}").json()
    first_view = operator.get(f"/invoices/{first['invoice_number']}").json()
    assert (second_view["status"], first_view["open_amount"]) == ("paid", "5.00")  # named one first, then oldest

    over = pay(operator, customer, f"bank-{unique}", "15.00")
    assert over.json()["unapplied"] == "10.00"
    after = account(operator, customer)
    assert (after["open_balance"], after["unapplied_credit"], after["available_credit"]) == \
        ("0.00", "10.00", "1010.00")
    # the credit pays the next invoice as it is issued
    decided(cfg, bus, order(f"o-{unique}-3", customer, ACCOUNT, lines=(("BULB-60W", 1, "4.00"),)))
    after = account(operator, customer)
    assert (after["open_balance"], after["unapplied_credit"]) == ("0.00", "6.00")
    # a payment the feed sends for an account we do not have is dead-lettered, not lost silently
    stray = bus.publish(PaymentReceived(payer_reference=f"erp-{unique}-stray", customer_id=f"c-none-{unique}",
                                        amount={"amount": "1.00", "currency": "EUR"}, received_on=payments.clock.now().date()))
    published(cfg, stray)
    assert query(cfg, "SELECT outcome FROM inbox WHERE event_id = %s", (stray,))[0]["outcome"] == "dead_lettered"
    books_balanced(operator)


def test_the_record_payment_command_records_once_through_the_api(cfg, bus, payments, operator, unique):
    import typer
    from typer.testing import CliRunner

    from services.payments.cli import record_payment
    app = typer.Typer()
    app.command()(record_payment)
    customer = f"c-{unique}"
    open_account(operator, customer, "100.00")
    decided(cfg, bus, order(f"o-{unique}", customer, ACCOUNT, lines=(("BULB-60W", 1, "80.00"),)))
    key = payments.key("operator", "ops-cli")["Authorization"].removeprefix("Bearer ")
    args = [customer, "30.00", "--reference", f"bank-{unique}", "--url", payments.urls["payments"]]
    first = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": key})
    assert first.exit_code == 0 and "recorded" in first.output and "already" not in first.output, first.output
    again = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": key})
    assert again.exit_code == 0 and "already recorded" in again.output
    assert account(operator, customer)["open_balance"] == "50.00"
    customer_key = payments.key("customer", customer)["Authorization"].removeprefix("Bearer ")
    refused = CliRunner().invoke(app, args, env={"SALESBUS_API_KEY": customer_key})
    assert refused.exit_code == 1 and "403" in refused.output


# --- refunds and credit notes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["tok_visa_approved", "tok_timeout_once"])
def test_a_cancelled_card_order_is_refunded_once_even_when_the_cancel_is_retried_and_redelivered(
        cfg, bus, payments, operator, gateway, unique, token):
    customer, order_id = f"c-{unique}", f"o-{unique}"
    paid = decided(cfg, bus, order(order_id, customer, card(token)))
    assert paid["status"] == "verified"
    cancelled = cancel(order_id, customer)
    orders_id = deterministic_id("OrderCancelled", order_id)  # the id the orders service gives it
    ids = [bus.publish(cancelled, event_id=orders_id), bus.publish(cancelled, event_id=orders_id),
           bus.publish(cancelled)]  # redelivered, and republished by an upstream system with a new id
    published(cfg, orders_id, ids[2])
    [refunded] = wait_until(lambda: events(cfg, "OrderRefunded", order_id), timeout=WAIT, message="OrderRefunded")
    assert refunded["data"]["method"] == "card" and refunded["data"]["amount"] == {"amount": "24.50",
                                                                                   "currency": "EUR"}
    assert refunded["data"]["refund_reference"].startswith("re_")
    assert gateway.refunds_for(paid["charge_reference"]) == [Decimal("24.50")]
    assert len(query(cfg, "SELECT 1 FROM refund WHERE order_id = %s", (order_id,))) == 1
    books_balanced(operator)


def test_a_cancelled_account_order_gets_one_credit_note_that_lowers_the_balance(cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "500.00")
    decided(cfg, bus, order(f"o-{unique}-1", customer, ACCOUNT, lines=(("BULB-60W", 2, "50.00"),)))
    decided(cfg, bus, order(f"o-{unique}-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "30.00"),)))
    assert account(operator, customer)["open_balance"] == "130.00"
    # part of the first invoice is paid, so its credit note frees more than it still owes
    pay(operator, customer, f"bank-{unique}", "80.00")   # 100 -> 20 open on the first, 30 on the second
    cancelled = cancel(f"o-{unique}-1", customer)
    orders_id = deterministic_id("OrderCancelled", f"o-{unique}-1")
    bus.publish(cancelled, event_id=orders_id)
    bus.publish(cancelled, event_id=orders_id)
    again = bus.publish(cancelled)
    published(cfg, orders_id, again)

    [note] = events(cfg, "CreditNoteIssued", customer)
    assert note["data"]["amount"] == {"amount": "100.00", "currency": "EUR"}
    assert note["data"]["credit_note_number"].startswith("CN-")
    [refunded] = events(cfg, "OrderRefunded", f"o-{unique}-1")
    assert (refunded["data"]["method"], refunded["data"]["refund_reference"]) == \
        ("account", note["data"]["credit_note_number"])
    after = account(operator, customer)
    # 100 credited: 20 closes its own invoice, 30 the other, 50 stays as credit
    assert (after["open_balance"], after["unapplied_credit"]) == ("0.00", "50.00")
    invoice = operator.get(f"/invoices/{note['data']['invoice_number']}").json()
    assert (invoice["credited"], invoice["open_amount"]) == ("100.00", "0.00")
    assert len(query(cfg, "SELECT 1 FROM credit_note WHERE order_id = %s", (f"o-{unique}-1",))) == 1
    books_balanced(operator)


def test_an_order_cancelled_before_its_payment_is_never_charged(cfg, bus, payments, gateway, unique):
    customer, order_id = f"c-{unique}", f"o-{unique}"
    published(cfg, bus.publish(cancel(order_id, customer)))
    paid = decided(cfg, bus, order(order_id, customer, card("tok_visa_approved")))
    assert (paid["status"], paid["reason_code"]) == ("declined", "order_cancelled")
    assert gateway.charges_for(order_id) == 0
    assert events(cfg, "PaymentVerified", order_id) == [] and events(cfg, "PaymentDeclined", order_id) == []


# --- overdue -------------------------------------------------------------------------------------------------------

def test_an_overdue_account_gets_each_reminder_once_goes_on_hold_and_is_released_by_a_payment(
        cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "1000.00", terms=0, time_zone="America/New_York")
    decided(cfg, bus, order(f"o-{unique}-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "70.00"),)))
    decided(cfg, bus, order(f"o-{unique}-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "30.00"),)))
    [number, _] = sorted(r["invoice_number"] for r in query(
        cfg, "SELECT invoice_number FROM invoice WHERE customer_id = %s", (customer,)))
    policy = OverduePolicy(steps=(3, 14, 30), hold_after_days=30, local_hour=8)
    pool = db.make_pool(cfg.database_for("payments"), max_size=4, name="money-overdue")
    # two replicas' view of a morning 32 days on from the services' clock (other tests move it)
    later = OffsetClock(payments.clock.now() - datetime.now(timezone.utc) + timedelta(days=32))
    work = lambda: unit_of_work(pool, source="payments", clock=later)  # noqa: E731
    try:
        query(cfg, "UPDATE supplier_account SET next_overdue_check_at = now() WHERE customer_id = %s RETURNING 1",
              (customer,))
        def replica() -> None:
            while run_due(work, policy):   # other tests' accounts are due too: until none is left
                pass
        replicas = [threading.Thread(target=replica) for _ in range(2)]
        for t in replicas:
            t.start()
        for t in replicas:
            t.join(30)
        assert run_due(work, policy) is False   # nothing due again until the next local morning
        query(cfg, "UPDATE supplier_account SET next_overdue_check_at = now() WHERE customer_id = %s RETURNING 1",
              (customer,))
        run_due(work, policy)   # and a redone morning sends nothing twice
        reminders = query(cfg, "SELECT invoice_number, step_days FROM overdue_reminder WHERE invoice_number "
                               "IN (SELECT invoice_number FROM invoice WHERE customer_id = %s) ORDER BY 1, 2",
                          (customer,))
        assert len(reminders) == 6 and {r["step_days"] for r in reminders} == {3, 14, 30}
        [row] = query(cfg, "SELECT on_hold, next_overdue_check_at FROM supplier_account WHERE customer_id = %s",
                      (customer,))
        assert row["on_hold"] is True
        local = row["next_overdue_check_at"].astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (8, 0)
        wait_until(lambda: len(events(cfg, "InvoiceOverdue", customer)) == 6, timeout=WAIT,
                   message="six InvoiceOverdue events")

        held = decided(cfg, bus, order(f"o-{unique}-3", customer, ACCOUNT, lines=(("BULB-60W", 1, "1.00"),)))
        assert (held["status"], held["reason_code"]) == ("declined", "account_on_hold")
        [declined] = events(cfg, "PaymentDeclined", f"o-{unique}-3")
        assert "on hold" in declined["data"]["message"]

        # a part payment 32 days on leaves the younger invoice overdue: the hold stays
        with work() as uow:
            commands.record_payment(uow, customer_id=customer, payer_reference=f"bank-{unique}-part",
                                    amount=Money(amount=Decimal("70.00"), currency="EUR"),
                                    received_on=later.now().date(), named=[number], note=None, recorded_by="test")
        assert account(operator, customer)["on_hold"] is True
    finally:
        pool.close()
    r = pay(operator, customer, f"bank-{unique}-rest", "30.00")
    assert r.status_code == 201, r.text
    after = account(operator, customer)
    assert (after["on_hold"], after["open_balance"]) == (False, "0.00")
    assert [e["data"]["change"] for e in events(cfg, "SupplierAccountChanged", customer)][-3:] == \
        ["hold", "payment", "release"]
    assert decided(cfg, bus, order(f"o-{unique}-4", customer, ACCOUNT, lines=(("BULB-60W", 1, "1.00"),)))[
        "status"] == "verified"


# --- statements and ageing -------------------------------------------------------------------------------------------

def test_statement_and_ageing_in_the_customers_time_zone(cfg, bus, payments, operator, unique):
    customer = f"c-{unique}"
    open_account(operator, customer, "1000.00", terms=10, time_zone="Pacific/Auckland")
    decided(cfg, bus, order(f"o-{unique}-1", customer, ACCOUNT, lines=(("BULB-60W", 1, "40.00"),)))
    decided(cfg, bus, order(f"o-{unique}-2", customer, ACCOUNT, lines=(("BULB-60W", 1, "60.00"),)))
    pay(operator, customer, f"bank-{unique}", "45.00")
    published(cfg, bus.publish(cancel(f"o-{unique}-2", customer)))
    today = payments.clock.now().astimezone(ZoneInfo("Pacific/Auckland")).date()  # the services' clock

    st = operator.get(f"/accounts/{customer}/statement", params={"from": today.isoformat()}).json()
    assert (st["opening_balance"], st["invoices"], st["payments"], st["credit_notes"], st["closing_balance"]) == \
        ("0.00", "100.00", "45.00", "60.00", "-5.00")
    assert [ln["kind"] for ln in st["lines"]].count("invoice") == 2 and st["lines"][-1]["balance"] == "-5.00"
    assert st["period_to"] == today.isoformat() and st["time_zone"] == "Pacific/Auckland"
    tomorrow = operator.get(f"/accounts/{customer}/statement",
                            params={"from": (today + timedelta(days=1)).isoformat(),
                                    "to": (today + timedelta(days=2)).isoformat()}).json()
    assert (tomorrow["opening_balance"], tomorrow["closing_balance"], tomorrow["lines"]) == ("-5.00", "-5.00", [])

    # the 40.00 invoice was paid; open nothing, so create one more and age it
    decided(cfg, bus, order(f"o-{unique}-3", customer, ACCOUNT, lines=(("BULB-60W", 1, "25.00"),)))
    now = operator.get(f"/accounts/{customer}/ageing").json()
    assert now["buckets"]["current"] == "20.00" and now["total_open"] == "20.00"  # 5.00 of credit applied
    aged = operator.get(f"/accounts/{customer}/ageing", params={"as_of": (today + timedelta(days=45)).isoformat()})
    assert aged.json()["buckets"]["31-60"] == "20.00"
    with payments.client("payments", "customer", customer) as mine:
        assert mine.get(f"/accounts/{customer}/statement").status_code == 200
    with payments.client("payments", "customer", f"other-{unique}") as other:
        assert other.get(f"/accounts/{customer}/statement").status_code == 403
        assert other.get(f"/accounts/{customer}/ageing").status_code == 403
        assert other.get("/ledger/trial-balance").status_code == 403
    backwards = operator.get(f"/accounts/{customer}/statement",
                             params={"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()})
    assert backwards.status_code == 200, backwards.text   # read forwards
    assert (backwards.json()["period_from"], backwards.json()["period_to"]) == \
        ((today - timedelta(days=1)).isoformat(), today.isoformat())
    books_balanced(operator)


# --- emails (the notifications service reacting to payments' events) ------------------------------------------------

def test_invoice_reminder_and_refund_emails_reach_the_customer_with_the_invoice_pdf(cfg, stack, bus, payments,
                                                                                    operator, unique):
    from runtime.config import with_dbname
    from runtime.embedded import read_mail
    payments.start("notifications")
    customer, billing = f"c-{unique}", f"ap-{unique}@example.hr"
    open_account(operator, customer, "1000.00", terms=0, billing_email=billing, language="hr")
    decided(cfg, bus, order(f"o-{unique}", customer, ACCOUNT, lines=(("BULB-60W", 3, "12.50"),)))
    [number] = [r["invoice_number"] for r in query(cfg, "SELECT invoice_number FROM invoice WHERE order_id = %s",
                                                   (f"o-{unique}",))]

    def mail() -> list:
        return [m for m in read_mail(stack.mail.maildir) if m["To"] == billing]

    [invoice] = wait_until(lambda: mail() or None, timeout=WAIT, message="the invoice email")
    assert number in str(invoice["Subject"]) and invoice["X-Salesbus-Kind"] == "invoice"
    [pdf] = list(invoice.iter_attachments())
    assert (pdf.get_content_type(), pdf.get_filename()) == ("application/pdf", f"{number}.pdf")
    assert pdf.get_content().startswith(b"%PDF-")
    assert "Broj računa" in invoice.get_body(("plain",)).get_content()   # the billing contact's language

    # a reminder step reached 4 days on (steps 3, 14, 30): one email, even when the morning is redone
    pool = db.make_pool(cfg.database_for("payments"), max_size=2, name="money-mail")
    try:
        for _ in range(2):
            query(cfg, "UPDATE supplier_account SET next_overdue_check_at = now() WHERE customer_id = %s "
                       "RETURNING 1", (customer,))
            ahead = OffsetClock(payments.clock.now() - datetime.now(timezone.utc) + timedelta(days=4))
            while run_due(lambda: unit_of_work(pool, source="payments", clock=ahead), OverduePolicy()):
                pass
    finally:
        pool.close()
    reminder = wait_until(lambda: [m for m in mail() if m["X-Salesbus-Kind"] == "invoice_overdue"] or None,
                          timeout=WAIT, message="the reminder email")
    assert len(reminder) == 1 and number in reminder[0].get_body(("plain",)).get_content()

    published(cfg, bus.publish(cancel(f"o-{unique}", customer)))

    def refund_emails() -> list:
        with psycopg.connect(with_dbname(cfg.database_url, "notifications")) as conn:
            return conn.execute("SELECT recipient, status FROM notifications WHERE order_id = %s AND kind = %s",
                                (f"o-{unique}", "order_refunded")).fetchall()
    # to the contact the order gave (its delivery email), once
    assert wait_until(lambda: (r := refund_emails()) and r[0][1] == "sent" and r, timeout=WAIT,
                      message="the refund email") == [("buyer@example.hr", "sent")]


# --- the books under random sequences, on the real database ---------------------------------------------------------

def _check_books(conn, customer: str) -> None:
    from services.payments import store
    from services.payments.ledger import receivable
    assert store.unbalanced_journals(conn) == []
    assert store.balances_not_matching_receivables(conn) == []
    totals = conn.execute("SELECT currency, sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) AS t "
                          "FROM ledger_entry GROUP BY currency").fetchall()
    assert all(r["t"] == 0 for r in totals), totals
    one = lambda sql: conn.execute(sql, {"c": customer}).fetchone()["v"]  # noqa: E731
    owed = one("SELECT COALESCE(sum(CASE side WHEN 'debit' THEN amount ELSE -amount END), 0) AS v "
               f"FROM ledger_entry WHERE account = '{receivable(customer)}'")
    invoiced = one("SELECT COALESCE(sum(total), 0) AS v FROM invoice WHERE customer_id = %(c)s")
    paid = one("SELECT COALESCE(sum(amount), 0) AS v FROM payment_received WHERE customer_id = %(c)s")
    credited = one("SELECT COALESCE(sum(amount), 0) AS v FROM credit_note WHERE customer_id = %(c)s")
    assert owed == invoiced - paid - credited
    account = conn.execute("SELECT * FROM supplier_account WHERE customer_id = %(c)s", {"c": customer}).fetchone()
    assert account["open_balance"] == one("SELECT COALESCE(sum(open_amount), 0) AS v FROM invoice "
                                          "WHERE customer_id = %(c)s")
    assert account["open_balance"] == 0 or account["unapplied_credit"] == 0
    assert account["open_balance"] <= account["credit_limit"]
    over = conn.execute("SELECT r.order_id FROM refund r JOIN payment p USING (order_id) "
                        "WHERE r.amount > p.charged_amount AND p.customer_id = %(c)s", {"c": customer}).fetchall()
    assert over == []


def test_any_sequence_of_charges_payments_cancellations_and_refunds_keeps_the_books(cfg, payments, tmp_path):
    """The property of tests/unit/test_money_books.py, through the real handlers, commands and SQL."""
    import uuid

    from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

    from services.payments import store
    from services.payments.handlers import on_order_cancelled, on_order_placed
    from services.payments.ledger import SupplierAccount

    gateway = SimulatedGateway(tmp_path / "gw.sqlite")
    pool = db.make_pool(cfg.database_for("payments"), max_size=2, name="money-property")
    clock = OffsetClock()
    amount = st.decimals(min_value="0.01", max_value="3000", places=2)
    op = st.one_of(st.tuples(st.just("account"), amount), st.tuples(st.just("card"), amount),
                   st.tuples(st.just("pay"), amount, st.integers(0, 9)),
                   st.tuples(st.just("cancel"), st.integers(0, 9)))

    D = Decimal
    # besides the random ones, a sequence sure to reach each kind of operation: a decline over the
    # limit, an overpayment left as credit, an account and a card order cancelled (and re-cancelled)
    @hsettings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(op, min_size=1, max_size=12))
    @example([("account", D("600.00")), ("account", D("600.00")), ("pay", D("700.00"), 0), ("card", D("20.00")),
              ("account", D("50.00")), ("cancel", 0), ("cancel", 2), ("cancel", 2)])
    def run(ops):
        customer = f"c-prop-{uuid.uuid4().hex[:10]}"
        orders: list[str] = []
        with unit_of_work(pool, source="payments", clock=clock) as uow:
            store.open_account(uow.conn, SupplierAccount(customer, Decimal("1000.00"), Decimal("0.00"), "EUR", 30,
                                                         "active"), "test", uow.now())
        for n, o in enumerate(ops):
            with unit_of_work(pool, source="payments", clock=clock) as uow:
                if o[0] in ("account", "card"):
                    orders.append(f"o-{customer}-{n}")
                    on_order_placed(order(orders[-1], customer, ACCOUNT if o[0] == "account"
                                          else card("tok_visa_approved"), lines=(("BULB-60W", 1, str(o[1])),)),
                                    uow, gateway=gateway, currencies=cfg.supported_currencies())
                elif o[0] == "pay":
                    named = [r["invoice_number"] for r in uow.conn.execute(
                        "SELECT invoice_number FROM invoice WHERE customer_id = %s ORDER BY 1", (customer,))]
                    commands.record_payment(uow, customer_id=customer, payer_reference=f"ref-{customer}-{n}",
                                            amount=Money(amount=o[1], currency="EUR"), received_on=payments.clock.now().date(),
                                            named=named[o[2]:o[2] + 1], note=None, recorded_by="test")
                elif orders:
                    target = orders[o[1] % len(orders)]
                    for _ in range(2):   # a retried cancel: the second finds it refunded
                        on_order_cancelled(cancel(target, customer), uow, gateway=gateway)
            with pool.connection() as conn:
                conn.row_factory = dict_row
                _check_books(conn, customer)

    try:
        run()
    finally:
        pool.close()
    # the sequences did reach every kind of operation (else the property says little; the explicit
    # example above makes sure of it: orders are indexed as placed, so ("cancel", 2) is the card order)
    for sql in ("SELECT count(*) AS n FROM credit_note WHERE customer_id LIKE 'c-prop-%%'",
                "SELECT count(*) AS n FROM refund r JOIN payment p USING (order_id) "
                "WHERE p.customer_id LIKE 'c-prop-%%' AND r.method = 'card'",
                "SELECT count(*) AS n FROM payment_received WHERE customer_id LIKE 'c-prop-%%' AND unapplied > 0",
                "SELECT count(*) AS n FROM payment WHERE customer_id LIKE 'c-prop-%%' AND status = 'declined'"):
        assert query(cfg, sql)[0]["n"] > 0, sql
