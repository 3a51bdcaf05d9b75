"""`salesbus record-payment`: an operator records a payment received, through the payments API
(which allocates it and announces the account). Recording the same payer reference again is
harmless: the payment is recorded once.

The operator API key comes from SALESBUS_API_KEY. The payments URL is --url, else
SALESBUS_PAYMENTS_URL, else the one `salesbus up` recorded in the data directory.
"""
from __future__ import annotations

from typing import List, Optional

import typer

from runtime.cli_http import post_as
from runtime.config import Settings


def payments_url(cfg: Settings | None = None) -> str | None:
    cfg = cfg or Settings()
    if cfg.payments_url:
        return cfg.payments_url
    info = cfg.embedded() or {}
    port = (info.get("services") or {}).get("payments", {}).get("http")
    return f"http://127.0.0.1:{port}" if port else None


def record_payment(customer_id: str = typer.Argument(..., help="the customer whose account is paid"),
                   amount: str = typer.Argument(..., help="decimal amount received, e.g. 250.00"),
                   reference: str = typer.Option(..., help="the payer's (bank's) reference: the idempotency key"),
                   currency: str = typer.Option("EUR", help="ISO 4217 code; must be the account's"),
                   invoice: List[str] = typer.Option([], help="an invoice to pay first (repeatable)"),
                   received_on: Optional[str] = typer.Option(None, help="value date, YYYY-MM-DD (default today)"),
                   url: Optional[str] = typer.Option(None, help="payments service base URL")):
    """Record a payment received on a supplier account."""
    cfg = Settings()
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    if not key:
        typer.echo("error: set SALESBUS_API_KEY to an operator API key", err=True)
        raise typer.Exit(2)
    base = url or payments_url(cfg)
    if not base:
        typer.echo("error: no payments URL: pass --url or set SALESBUS_PAYMENTS_URL (or start `salesbus up`)",
                   err=True)
        raise typer.Exit(2)
    body = {"payer_reference": reference, "amount": amount, "currency": currency, "invoice_numbers": invoice}
    if received_on:
        body["received_on"] = received_on
    resp = post_as("payments", base, f"/accounts/{customer_id}/payments", body, key)
    paid = resp.json()
    again = " (already recorded)" if resp.status_code == 200 else ""
    typer.echo(f"payment {paid['payer_reference']} of {paid['amount']} {paid['currency']} recorded for "
               f"{paid['customer_id']}{again}; unapplied {paid['unapplied']}")
