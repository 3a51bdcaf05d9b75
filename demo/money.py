"""Customers settling their supplier accounts: an operator records each bank transfer (payments
allocates it to the invoice). Without it the demo's year of orders on account would go overdue
and payments would put the accounts on hold (new account orders declined: account_on_hold)."""
from __future__ import annotations

from demo.context import DemoContext


def pay_open_invoices(ctx: DemoContext, customer: str, indent: str = "  ") -> None:
    with ctx.client("payments", "operator", "demo-operator") as pay:
        invoices = pay.get("/invoices", params={"customer_id": customer, "open": "true", "limit": 200})
        if not ctx.check(invoices.status_code == 200, f"list {customer}'s open invoices: {invoices.status_code}"):
            return
        for inv in invoices.json()["items"]:
            r = pay.post(f"/accounts/{customer}/payments", json={
                "payer_reference": f"bank-{customer}-{inv['invoice_number']}", "amount": inv["open_amount"],
                "currency": inv["currency"], "invoice_numbers": [inv["invoice_number"]]})
            if ctx.check(r.status_code in (200, 201), f"pay {inv['invoice_number']}: {r.status_code} {r.text[:200]}"):
                ctx.console.print(f"{indent}{customer} paid invoice {inv['invoice_number']} ({inv['open_amount']} "
                                  f"{inv['currency']}) by bank transfer")
