"""Supplier-account (on-credit) payments: the credit decision and double-entry bookkeeping."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from schemas.events.payments import SupplierAccountChanged
from schemas.types import Money
from services.payments.validation import Decline

REVENUE = "revenue"


def receivable(customer_id: str) -> str:
    return f"receivable:{customer_id}"


@dataclass(frozen=True)
class SupplierAccount:
    customer_id: str
    credit_limit: Decimal
    open_balance: Decimal
    currency: str
    payment_terms_days: int
    status: Literal["active", "suspended"]
    #: money received or credited and not yet applied (only while no invoice is open)
    unapplied_credit: Decimal = Decimal("0.00")
    on_hold: bool = False
    terms_kind: Literal["net", "eom", "eom_net"] = "net"
    time_zone: str = "UTC"
    billing_email: str | None = None
    language: str = "en"

    def __post_init__(self) -> None:
        for name in ("credit_limit", "open_balance", "unapplied_credit"):
            if not isinstance(getattr(self, name), Decimal):
                raise TypeError(f"{name} must be a Decimal, never a float")

    @classmethod
    def from_event(cls, e: SupplierAccountChanged) -> "SupplierAccount":
        return cls(e.customer_id, e.credit_limit, e.open_balance, e.currency, e.payment_terms_days, e.status)

    @property
    def available_credit(self) -> Decimal:
        return self.credit_limit - self.open_balance + self.unapplied_credit


def decide_account_charge(account: SupplierAccount | None, amount: Money) -> Decline | None:
    """Decline the charge if the account cannot take it, else None (the caller then books it)."""
    if account is None:
        return Decline("no_account", "this customer has no supplier account; pay by card or ask for an account")
    if account.status != "active":
        return Decline("account_suspended", f"the supplier account of {account.customer_id} is suspended")
    if account.on_hold:
        return Decline("account_on_hold", f"the supplier account of {account.customer_id} is on hold because "
                                          "invoices are overdue; it is released as soon as they are paid")
    if amount.currency != account.currency:
        return Decline("currency_mismatch", f"the order is in {amount.currency} but the supplier account "
                                            f"is kept in {account.currency}")
    if amount.amount > account.available_credit:
        cur = account.currency
        return Decline("credit_limit_exceeded",
                       f"order amount {amount} exceeds the available credit {_fmt(account.available_credit, cur)} "
                       f"(credit limit {_fmt(account.credit_limit, cur)}, "
                       f"open balance {_fmt(account.open_balance, cur)}"
                       + (f", unapplied credit {_fmt(account.unapplied_credit, cur)}" if account.unapplied_credit
                          else "") + ")")
    return None


@dataclass(frozen=True)
class LedgerEntry:
    account: str
    side: Literal["debit", "credit"]
    amount: Money
    reference: str

    @property
    def signed_amount(self) -> Decimal:
        """Debits positive, credits negative: a balanced set of entries sums to zero."""
        return self.amount.amount if self.side == "debit" else -self.amount.amount


def ledger_entries(account_customer_id: str, amount: Money, reference: str) -> list[LedgerEntry]:
    """Double entry for an on-account sale: debit the customer's receivable, credit revenue."""
    if amount.amount <= 0:
        raise ValueError(f"ledger amount must be positive, got {amount}")
    return [LedgerEntry(receivable(account_customer_id), "debit", amount, reference),
            LedgerEntry(REVENUE, "credit", amount, reference)]


def due_date(charged_on: date, terms_days: int) -> date:
    """Net terms: an invoice charged on `charged_on` is due `terms_days` days later."""
    if terms_days < 0:
        raise ValueError(f"payment terms cannot be negative ({terms_days} days)")
    return charged_on + timedelta(days=terms_days)


def _fmt(d: Decimal, currency: str) -> str:
    return f"{format(d, 'f')} {currency}"
