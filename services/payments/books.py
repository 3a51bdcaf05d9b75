"""The pure arithmetic of supplier-account money: payment terms, allocation of payments and
credit notes to invoices, the journals each operation books, ageing and statements.

No SQL here: `money_store.py` persists what these functions decide, and the unit tests
(tests/unit/test_money_books.py) check them on their own, including a property test that any
sequence of operations leaves the books balanced.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable, Literal

from schemas.types import Money
from services.payments.ledger import REVENUE, LedgerEntry, receivable

#: cash received from customers (bank transfers, ERP feeds)
BANK = "bank"
#: what the card gateway owes us for card charges (settled outside these books)
CARD_GATEWAY = "card_gateway"
#: credit notes and card refunds: a contra-revenue account, so revenue keeps what was sold
SALES_RETURNS = "sales_returns"

TermsKind = Literal["net", "eom", "eom_net"]
ZERO = Decimal("0.00")


# --- payment terms --------------------------------------------------------------------------------

def _end_of_month(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def due_on(issued: date, days: int, kind: TermsKind = "net") -> date:
    """When an invoice issued on `issued` falls due.

    net      issue date + N days ("net 30")
    eom      the end of the month in which issue date + N days falls ("30 days end of month")
    eom_net  the end of the issue month, then + N days ("net 30 EOM": invoices of one month
             share one due date)
    """
    if days < 0:
        raise ValueError(f"payment terms cannot be negative ({days} days)")
    if kind == "net":
        return issued + timedelta(days=days)
    if kind == "eom":
        return _end_of_month(issued + timedelta(days=days))
    if kind == "eom_net":
        return _end_of_month(issued) + timedelta(days=days)
    raise ValueError(f"unknown payment terms kind {kind!r}")


# --- allocation ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpenInvoice:
    number: str
    issue_date: date
    due_date: date
    open_amount: Decimal


@dataclass(frozen=True)
class Credit:
    """Money on the account not yet applied: a payment received or a credit note."""
    kind: Literal["payment", "credit_note"]
    source_id: str
    unapplied: Decimal


@dataclass(frozen=True)
class Allocation:
    invoice_number: str
    kind: Literal["payment", "credit_note"]
    source_id: str
    amount: Decimal


def allocate(invoices: Iterable[OpenInvoice], credits: Iterable[Credit],
             named: Iterable[str] = ()) -> list[Allocation]:
    """Apply credits (in the order given) to open invoices: the named ones first, in the order
    named, then the rest oldest first (issue date, then number, which is gap-free and rising).

    What no invoice takes stays unapplied on its credit (an overpayment is the customer's
    credit); an invoice no credit covers keeps its open remainder (an underpayment). Named
    invoices that are not open are passed over (already paid or not this customer's).
    """
    open_ = {i.number: i for i in invoices if i.open_amount > 0}
    named = [n for n in dict.fromkeys(named) if n in open_]
    order = named + [i.number for i in sorted(open_.values(), key=lambda i: (i.issue_date, i.number))
                     if i.number not in named]
    remaining = {n: open_[n].open_amount for n in order}
    out: list[Allocation] = []
    for credit in credits:
        left = credit.unapplied
        for number in order:
            if left <= 0:
                break
            take = min(left, remaining[number])
            if take > 0:
                out.append(Allocation(number, credit.kind, credit.source_id, take))
                remaining[number] -= take
                left -= take
    return out


def refundable(charged: Decimal, already_refunded: Decimal) -> Decimal:
    """What may still be refunded of a charge: never more than was charged."""
    if charged < 0 or already_refunded < 0:
        raise ValueError("charges and refunds are not negative")
    return max(charged - already_refunded, ZERO)


# --- journals -----------------------------------------------------------------------------------------

def _pair(debit: str, credit: str, amount: Money, reference: str) -> list[LedgerEntry]:
    if amount.amount <= 0:
        raise ValueError(f"ledger amount must be positive, got {amount}")
    return [LedgerEntry(debit, "debit", amount, reference), LedgerEntry(credit, "credit", amount, reference)]


def invoice_journal(customer_id: str, amount: Money, reference: str) -> list[LedgerEntry]:
    """An on-account sale: the customer owes us (receivable), we earned it (revenue)."""
    return _pair(receivable(customer_id), REVENUE, amount, reference)


def payment_journal(customer_id: str, amount: Money, reference: str) -> list[LedgerEntry]:
    """Money received: the bank has it, the customer owes that much less (all of it, even an
    overpayment: the receivable then goes below zero, which is the customer's credit)."""
    return _pair(BANK, receivable(customer_id), amount, reference)


def credit_note_journal(customer_id: str, amount: Money, reference: str) -> list[LedgerEntry]:
    """A credit note: the sale is returned, the customer owes that much less."""
    return _pair(SALES_RETURNS, receivable(customer_id), amount, reference)


def card_charge_journal(amount: Money, reference: str) -> list[LedgerEntry]:
    return _pair(CARD_GATEWAY, REVENUE, amount, reference)


def card_refund_journal(amount: Money, reference: str) -> list[LedgerEntry]:
    return _pair(SALES_RETURNS, CARD_GATEWAY, amount, reference)


# --- ageing and statements ----------------------------------------------------------------------------

BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")


def bucket(due: date, as_of: date) -> str:
    """The ageing bucket of an invoice due on `due`, seen on the customer's local `as_of`."""
    late = (as_of - due).days
    if late <= 0:
        return "current"
    if late <= 30:
        return "1-30"
    if late <= 60:
        return "31-60"
    if late <= 90:
        return "61-90"
    return "90+"


def ageing(invoices: Iterable[OpenInvoice], as_of: date) -> dict[str, Decimal]:
    out = {b: ZERO for b in BUCKETS}
    for inv in invoices:
        if inv.open_amount > 0:
            out[bucket(inv.due_date, as_of)] += inv.open_amount
    return out


@dataclass(frozen=True)
class StatementLine:
    on: date
    kind: Literal["invoice", "payment", "credit_note"]
    document: str
    amount: Decimal  # what the line adds to the balance: invoices positive, the others negative


def statement_period(start: date, end: date, max_days: int) -> tuple[date, date]:
    """The period a statement covers: given backwards it is read forwards, and one longer than
    `max_days` is shortened to the `max_days` before `end` (never before the first date Python
    holds: `?to=0005-01-01` answered 500 when end - max_days overflowed, found by the fuzz)."""
    start, end = min(start, end), max(start, end)
    earliest = end - timedelta(days=max_days) if (end - date.min).days > max_days else date.min
    return max(start, earliest), end


def statement_totals(opening: Decimal, lines: Iterable[StatementLine]) -> dict[str, Decimal]:
    lines = list(lines)
    sums = {k: sum((-l.amount if k != "invoice" else l.amount for l in lines if l.kind == k), ZERO)
            for k in ("invoice", "payment", "credit_note")}
    closing = opening + sums["invoice"] - sums["payment"] - sums["credit_note"]
    return {"opening": opening, "invoices": sums["invoice"], "payments": sums["payment"],
            "credit_notes": sums["credit_note"], "closing": closing}


def days_overdue(due: date, as_of: date) -> int:
    return max((as_of - due).days, 0)


def reminder_steps_due(due: date, as_of: date, steps: Iterable[int]) -> list[int]:
    """The reminder steps (days overdue) an invoice has reached by `as_of`; each is sent once,
    which the caller's unique key enforces (a step missed while we were down is still sent)."""
    late = days_overdue(due, as_of)
    return sorted(s for s in set(steps) if 0 < s <= late)


def parse_steps(text: str) -> tuple[int, ...]:
    steps = tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    if any(s <= 0 or s > 3650 for s in steps):
        raise ValueError(f"reminder steps are days overdue between 1 and 3650, not {text!r}")
    return steps
