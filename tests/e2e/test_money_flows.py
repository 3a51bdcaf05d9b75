"""Money on supplier accounts end to end, through the public HTTP APIs only (cart checkout, the
payments operator API, the orders service's cancel endpoint) and the emails actually delivered:
paying at the credit limit, an overdue hold and its release, refunds of cancelled orders.

The harness clock is shared by the whole session (other tests move it forward): every instant
here is computed from harness.clock.now(), never the wall clock."""
from __future__ import annotations

import io
import sqlite3
from contextlib import closing
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader

from services.payments.simulated_gateway import SimulatedGateway, state_path
from tests.conftest import wait_until
from tests.e2e.conftest import open_account, running_shop
from tests.e2e.test_checkout_to_doorstep import SERVICES, checkout, mail_to, status

pytestmark = pytest.mark.integration
WAIT = 60
ACCOUNT = {"mode": "account"}


@pytest.fixture(scope="module")
def shop(harness):
    return running_shop(harness, *SERVICES)


def account(shop, customer: str) -> dict:
    with shop.client("payments", "operator", "e2e-operator") as ops:
        r = ops.get(f"/accounts/{customer}")
        assert r.status_code == 200, r.text
        return r.json()


def pay(shop, customer: str, reference: str, amount: str):
    with shop.client("payments", "operator", "e2e-operator") as ops:
        return ops.post(f"/accounts/{customer}/payments",
                        json={"payer_reference": reference, "amount": amount, "currency": "EUR"})


def invoices(shop, customer: str) -> list[dict]:
    with shop.client("payments", "customer", customer) as me:
        return me.get("/invoices", params={"limit": 200}).json()["items"]


def decided(shop, response, expected: str) -> dict:
    assert response.status_code == 202, response.text
    order_id = response.json()["order_id"]
    wait_until(lambda: status(shop, order_id).get("status") in ("confirmed", "declined"), timeout=WAIT,
               message=f"a payment decision for {order_id}")
    view = status(shop, order_id)
    assert view["status"] == expected, view
    return view


def decline_reason(view: dict) -> str:
    [declined] = [t for t in view["timeline"] if t["event_type"] == "PaymentDeclined" and t["outcome"] == "applied"]
    return declined["details"]["reason_code"]


def books_balanced(shop) -> None:
    with shop.client("payments", "operator", "e2e-operator") as ops:
        assert ops.get("/ledger/trial-balance").json()["balanced"] is True
        assert ops.get("/ledger/balance").json()["balanced"] is True


def test_a_customer_at_the_credit_limit_pays_and_the_next_account_order_is_accepted(shop, stack, unique):
    customer, email = f"limit-{unique}", f"ap-{unique}@example.hr"
    open_account(shop, customer, "185.00")
    decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 100})[2], "confirmed")  # 185.00
    assert (account(shop, customer)["open_balance"], account(shop, customer)["available_credit"]) == \
        ("185.00", "0.00")
    refused = decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 10})[2], "declined")
    assert decline_reason(refused) == "credit_limit_exceeded"

    r = pay(shop, customer, f"bank-{unique}", "185.00")
    assert r.status_code == 201, r.text
    assert pay(shop, customer, f"bank-{unique}", "185.00").status_code == 200   # the same bank payment again
    assert (account(shop, customer)["open_balance"], account(shop, customer)["available_credit"]) == \
        ("0.00", "185.00")
    [invoice] = invoices(shop, customer)
    assert (invoice["status"], invoice["open_amount"]) == ("paid", "0.00")

    decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 10})[2], "confirmed")
    assert account(shop, customer)["open_balance"] == "18.50"
    books_balanced(shop)


def test_an_overdue_account_goes_on_hold_and_a_payment_releases_it(shop, stack, unique):
    customer, email, billing = f"late-{unique}", f"goods-{unique}@example.com", f"ap-{unique}@example.com"
    zone = "America/New_York"
    with shop.client("payments", "operator", "e2e-operator") as ops:
        r = ops.put(f"/accounts/{customer}", json={"credit_limit": "1000.00", "currency": "EUR",
                                                  "payment_terms_days": 0, "status": "active", "time_zone": zone,
                                                  "billing_email": billing})
        assert r.status_code in (200, 201), r.text
    decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 20})[2], "confirmed")   # 37.00
    [invoice] = invoices(shop, customer)
    assert invoice["due_date"] == invoice["issue_date"]   # terms 0: due the day it is issued

    # to 09:00 in the customer's zone 33 days after the due date: past the local 08:00 check,
    # more than the 30 days overdue that put an account on hold
    due = datetime.fromisoformat(invoice["due_date"]).date()
    morning = datetime.combine(due + timedelta(days=33), time(9), ZoneInfo(zone))
    assert morning > shop.clock.now()
    shop.clock.set(morning)
    wait_until(lambda: account(shop, customer)["on_hold"] is True, timeout=WAIT, message="the overdue hold")
    wait_until(lambda: sum(m["X-Salesbus-Kind"] == "invoice_overdue" for m in mail_to(stack, billing)) == 3,
               timeout=WAIT, message="the 3-, 14- and 30-day reminders")
    assert [m["X-Salesbus-Kind"] for m in mail_to(stack, billing)].count("invoice") == 1

    held = decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 1})[2], "declined")
    assert decline_reason(held) == "account_on_hold"

    assert pay(shop, customer, f"bank-{unique}", "37.00").status_code == 201
    after = account(shop, customer)
    assert (after["on_hold"], after["open_balance"]) == (False, "0.00")
    decided(shop, checkout(shop, customer, ACCOUNT, email, lines={"BULB-LED-9W": 1})[2], "confirmed")
    books_balanced(shop)


def cancel_twice(shop, customer: str, order_id: str) -> None:
    """The customer cancels, and their client retries the request."""
    with shop.client("orders", "customer", customer) as me:
        for _ in range(2):
            r = me.post(f"/orders/{order_id}/cancel", json={"reason": "ordered twice by mistake"})
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


def refund_mails(stack, address: str) -> list:
    return [m for m in mail_to(stack, address) if m["X-Salesbus-Kind"] == "order_refunded"]


def test_a_cancelled_card_order_and_a_cancelled_account_order_are_each_refunded_once(shop, stack, unique):
    card_customer, card_email = f"refund-card-{unique}", f"card-{unique}@example.hr"
    paid = decided(shop, checkout(shop, card_customer, {"mode": "card", "card_token": "tok_visa_approved"},
                                  card_email, lines={"BULB-LED-9W": 10})[2], "confirmed")   # 18.50
    acc_customer, acc_email = f"refund-acc-{unique}", f"acc-{unique}@example.hr"
    open_account(shop, acc_customer, "500.00")
    on_account = decided(shop, checkout(shop, acc_customer, ACCOUNT, acc_email, lines={"BULB-LED-9W": 40})[2],
                         "confirmed")   # 74.00
    assert account(shop, acc_customer)["open_balance"] == "74.00"

    cancel_twice(shop, card_customer, paid["order_id"])
    cancel_twice(shop, acc_customer, on_account["order_id"])

    wait_until(lambda: refund_mails(stack, card_email) and refund_mails(stack, acc_email), timeout=WAIT,
               message="both refund emails")
    gateway_state = state_path(shop.cfg).resolve()
    with closing(sqlite3.connect(gateway_state)) as db:   # the (simulated) card processor's own records
        [(charge,)] = db.execute("SELECT authorisation_id FROM charges WHERE idempotency_key = ?",
                                 (paid["order_id"],)).fetchall()
    assert SimulatedGateway(gateway_state).refunds_for(charge) == [Decimal("18.50")]
    [invoice] = invoices(shop, acc_customer)
    assert (invoice["status"], invoice["credited"], invoice["open_amount"]) == ("credited", "74.00", "0.00")
    with shop.client("payments", "customer", acc_customer) as me:
        detail = me.get(f"/invoices/{invoice['invoice_number']}").json()
        statement = me.get(f"/accounts/{acc_customer}/statement",
                           params={"from": invoice["issue_date"]}).json()
    [credit] = [a for a in detail["allocations"] if a["source_kind"] == "credit_note"]
    assert credit["source_id"].startswith("CN-") and Decimal(credit["amount"]) == Decimal("74.00")
    assert [ln["kind"] for ln in statement["lines"]] == ["invoice", "credit_note"]
    assert (statement["credit_notes"], statement["closing_balance"]) == ("74.00", "0.00")
    assert account(shop, acc_customer)["open_balance"] == "0.00"

    # once: one email each, whatever the retries; the card refunded once by the gateway
    assert len(refund_mails(stack, card_email)) == 1 and len(refund_mails(stack, acc_email)) == 1
    [card_mail], [acc_mail] = refund_mails(stack, card_email), refund_mails(stack, acc_email)
    assert "18.50" in card_mail.get_body(("plain",)).get_content()
    assert credit["source_id"] in acc_mail.get_body(("plain",)).get_content()
    books_balanced(shop)


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_invoice_pdf_is_served_to_its_customer_as_the_email_attached_it(shop, stack, unique):
    customer, billing = f"pdf-{unique}", f"faktury-{unique}@example.pl"
    with shop.client("payments", "operator", "e2e-operator") as ops:
        r = ops.put(f"/accounts/{customer}", json={"credit_limit": "1000.00", "currency": "EUR",
                                                  "payment_terms_days": 14, "status": "active",
                                                  "time_zone": "Europe/Warsaw", "billing_email": billing,
                                                  "language": "pl"})
        assert r.status_code in (200, 201), r.text
    decided(shop, checkout(shop, customer, ACCOUNT, f"d-{unique}@example.pl", lines={"BULB-LED-9W": 30})[2],
            "confirmed")   # 55.50
    [invoice] = invoices(shop, customer)
    number = invoice["invoice_number"]
    wait_until(lambda: mail_to(stack, billing), timeout=WAIT, message="the invoice email")
    [mail] = mail_to(stack, billing)
    [attached] = [p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf"]

    with shop.client("payments", "customer", customer) as me:
        got = me.get(f"/invoices/{number}.pdf")
        english = me.get(f"/invoices/{number}.pdf", params={"language": "en"})
        assert me.get(f"/invoices/{number[:-6]}999999.pdf").status_code == 404   # not issued
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/pdf" and got.content.startswith(b"%PDF-")
    text = pdf_text(got.content)
    assert text == pdf_text(attached.get_content())   # the download is the document the email attached
    assert number in text and "55,50" in text          # Polish: decimal comma
    assert english.status_code == 200 and "Invoice" in pdf_text(english.content) and "Faktura" not in \
        pdf_text(english.content)
    with shop.client("payments", "customer", f"other-{unique}") as other:
        assert other.get(f"/invoices/{number}.pdf").status_code == 404   # another's invoice: not even confirmed
    with shop.client("payments", "operator", "e2e-operator") as ops:
        assert ops.get(f"/invoices/{number}.pdf").status_code == 200
