"""What moves money on a supplier account, shared by the HTTP API, the event handlers and the
overdue worker: issue an invoice, record a payment received, refund a cancelled order (card
refund or credit note). Each runs in the caller's unit of work, holding the account's row lock,
and raises a `MoneyError` the caller maps (HTTP status, Rejected for events)."""
from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from runtime.uow import UnitOfWork
from schemas import (CreditNoteIssued, InvoiceIssued, Money, OrderPlaced, OrderRefunded, SupplierAccountChanged,
                     deterministic_id)
from services.payments import money_store as docs
from services.payments import store
from services.payments.books import (ZERO, allocate, card_refund_journal, credit_note_journal, due_on,
                                     payment_journal, refundable)
from services.payments.gateway import CardGateway
from services.payments.ledger import SupplierAccount
from services.payments.validation import LARGEST_AMOUNT

log = logging.getLogger(__name__)


class MoneyError(Exception):
    """A request about money that cannot be done as asked (the message says why). 409 over HTTP:
    the request is well formed (its schema says so); the account's state refuses it."""
    status = 409


class NoAccount(MoneyError):
    status = 404


class ReferenceConflict(MoneyError):
    """The payer's reference is already recorded for another payment."""
    status = 409


def local_date(now: datetime, time_zone: str) -> date:
    return now.astimezone(ZoneInfo(time_zone)).date()


# --- the account after a change -------------------------------------------------------------------------

def settle(uow: UnitOfWork, customer_id: str, named: list[str] | tuple[str, ...] = ()) -> None:
    """Apply the account's unapplied credits to its open invoices (named first, then oldest) and
    recompute its totals. Afterwards credit is left only when no invoice is open."""
    credits = docs.unapplied_credits(uow.conn, customer_id)
    if credits:  # most invoices meet no credit: then the open invoices (a list that grows) are not read
        docs.apply(uow.conn, allocate(docs.open_invoices(uow.conn, customer_id), credits, named), uow.now())
    docs.sync_account_totals(uow.conn, customer_id, uow.now())


def overdue_invoices(uow: UnitOfWork, account: SupplierAccount) -> list:
    today = local_date(uow.now(), account.time_zone)
    return [i for i in docs.open_invoices(uow.conn, account.customer_id) if i.due_date < today]


def account_changed(uow: UnitOfWork, customer_id: str, change: str) -> SupplierAccount:
    """Announce the account as it now stands (SupplierAccountChanged, in the transaction of the
    change, with the account's next version); returns it."""
    a, version = store.next_announcement(uow.conn, customer_id)
    return announce_account(uow, a, version, change)


def announce_account(uow: UnitOfWork, a: SupplierAccount, version: int, change: str) -> SupplierAccount:
    """SupplierAccountChanged for `a` as read with its next announcement `version`."""
    uow.emit(SupplierAccountChanged(
        customer_id=a.customer_id, credit_limit=a.credit_limit, open_balance=a.open_balance, currency=a.currency,
        payment_terms_days=a.payment_terms_days, status=a.status, changed_at=uow.now(),
        unapplied_credit=a.unapplied_credit, available_credit=max(a.available_credit, ZERO), on_hold=a.on_hold,
        change=change, version=version),
        event_id=deterministic_id("SupplierAccountChanged", a.customer_id, version))
    return a


def release_hold_if_paid(uow: UnitOfWork, customer_id: str) -> bool:
    """An account on hold is released as soon as nothing on it is overdue any more."""
    account = store.lock_account(uow.conn, customer_id)
    if account.on_hold and not overdue_invoices(uow, account):
        docs.set_hold(uow.conn, customer_id, False, uow.now())
        log.info("account %s released from hold: nothing overdue", customer_id)
        return True
    return False


# --- invoices ---------------------------------------------------------------------------------------------

def issue_invoice(uow: UnitOfWork, account: SupplierAccount, order: OrderPlaced, journal_id: str) -> str:
    """Invoice an on-account charge (the caller booked it and holds the account lock): a gap-free
    number for the issue year, dates in the account's time zone, then credit on the account is
    applied to it. Emits InvoiceIssued, then the account's SupplierAccountChanged ("invoice");
    returns the invoice number."""
    issued = local_date(uow.now(), account.time_zone)
    due = due_on(issued, account.payment_terms_days, account.terms_kind)
    tax = Money(amount=Decimal("0.00"), currency=order.total.currency)
    lines = [line.model_dump(mode="json") for line in order.lines]
    number = docs.insert_invoice(uow.conn, year=issued.year, customer_id=account.customer_id,   # numbered here
                                 order_id=order.order_id, journal_id=journal_id, currency=order.total.currency,
                                 total=order.total.amount, tax_total=tax.amount, lines=lines, issue_date=issued,
                                 due_date=due, now=uow.now())
    if account.unapplied_credit > 0:
        settle(uow, account.customer_id)   # credit waiting (read under the lock we hold): apply it
        docs.ensure_overdue_check(uow.conn, account.customer_id, uow.now())
        announced = store.next_announcement(uow.conn, account.customer_id)
    else:
        # Nothing to apply, so the new invoice only adds its total to the balance (with the
        # overdue check and the announcement version, one statement). Re-summing every open
        # invoice made each invoice cost more than the last on an account that keeps some open
        # (the bench's one account: payments 2.5 ms per order after 400 orders, 5.9 after 3000).
        announced = store.add_invoice_and_announce(uow.conn, account.customer_id, order.total.amount, uow.now())
    uow.emit(InvoiceIssued(invoice_number=number, customer_id=account.customer_id, order_id=order.order_id,
                           lines=order.lines, tax_total=tax, total=order.total, issue_date=issued, due_date=due,
                           time_zone=account.time_zone, billing_email=account.billing_email,
                           language=account.language, issued_at=uow.now()),
             event_id=deterministic_id("InvoiceIssued", number))
    announce_account(uow, *announced, "invoice")
    return number


# --- payments received ---------------------------------------------------------------------------------------

def record_payment(uow: UnitOfWork, *, customer_id: str, payer_reference: str, amount: Money, received_on: date,
                   named: list[str], note: str | None, recorded_by: str) -> tuple[dict, bool]:
    """Record a payment once per payer's reference and allocate it; returns (payment, created).

    The same reference again with the same payer and amount is the same payment (a replayed
    feed, a retried request): nothing changes and it is returned as it stands. With a different
    payer or amount it is a ReferenceConflict."""
    account = store.lock_account(uow.conn, customer_id)
    if account is None:
        raise NoAccount(f"{customer_id} has no supplier account")
    existing = docs.payment_by_reference(uow.conn, payer_reference)
    if existing is None:
        if amount.currency != account.currency:
            raise MoneyError(f"the payment is in {amount.currency} but the account is kept in {account.currency}")
        if amount.amount <= 0:
            raise MoneyError("a payment received must be more than zero")
        if account.unapplied_credit + amount.amount > LARGEST_AMOUNT:
            # an overpayment beyond what numeric(14,2) holds: refused, not a failed transaction
            raise MoneyError(f"the account's credit would exceed {LARGEST_AMOUNT} {account.currency}")
        payment_id = deterministic_id("payment-received", payer_reference)
        if docs.insert_payment(uow.conn, payment_id=payment_id, payer_reference=payer_reference,
                               customer_id=customer_id, currency=amount.currency, amount=amount.amount,
                               received_on=received_on, named=named, note=note, recorded_by=recorded_by,
                               now=uow.now(), journal_id=payment_id):
            store.book(uow.conn, payment_id, payment_journal(customer_id, amount, payer_reference),
                       customer_id=customer_id, order_id=None, booked_at=uow.now(), due_on=None,
                       document=payer_reference)
            settle(uow, customer_id, named)
            released = release_hold_if_paid(uow, customer_id)
            account_changed(uow, customer_id, "release" if released else "payment")
            return docs.payment_by_reference(uow.conn, payer_reference), True
        existing = docs.payment_by_reference(uow.conn, payer_reference)  # recorded concurrently
    if (existing["customer_id"], existing["amount"], existing["currency"]) != \
            (customer_id, amount.amount, amount.currency):
        raise ReferenceConflict(f"payer reference {payer_reference!r} is already recorded for another payment "
                                f"({existing['amount']} {existing['currency']} from {existing['customer_id']})")
    return existing, False


# --- cancellations: refunds and credit notes ------------------------------------------------------------

def refund_cancelled_order(uow: UnitOfWork, order_id: str, reason: str, gateway: CardGateway) -> str | None:
    """Refund a cancelled order's charge, once and never beyond it. Returns the refund
    reference, or None when there is nothing to refund (never charged, or refunded already).
    The caller holds the order lock (money_store.order_lock)."""
    paid = store.payment(uow.conn, order_id)
    if paid is None or paid["status"] != "verified" or docs.refund_of(uow.conn, order_id) is not None:
        return None
    amount = Money(amount=refundable(paid["charged_amount"], ZERO), currency=paid["currency"])
    journal_id = deterministic_id(order_id, "refund")
    if paid["method"] == "card":
        refund = gateway.refund(paid["charge_reference"], amount, idempotency_key=journal_id)
        reference = refund.refund_id
        store.book(uow.conn, journal_id, card_refund_journal(amount, order_id), customer_id=paid["customer_id"],
                   order_id=order_id, booked_at=uow.now(), due_on=None, document=reference)
    else:
        reference = _credit_note(uow, paid, amount, reason, journal_id)
        if reference is None:
            return None
    docs.insert_refund(uow.conn, order_id=order_id, method=paid["method"], amount=amount.amount,
                       currency=amount.currency, reference=reference, journal_id=journal_id, now=uow.now())
    uow.emit(OrderRefunded(order_id=order_id, customer_id=paid["customer_id"], method=paid["method"], amount=amount,
                           refund_reference=reference, refunded_at=uow.now()),
             event_id=deterministic_id("OrderRefunded", order_id))
    return reference


def _credit_note(uow: UnitOfWork, paid: dict, charged: Money, reason: str, journal_id: str) -> str | None:
    customer_id = paid["customer_id"]
    account = store.lock_account(uow.conn, customer_id)
    inv = docs.invoice_for_order(uow.conn, paid["order_id"])
    # an account charge made before invoices existed has none: the credit note is for the charge
    left = refundable(inv["total"], inv["credited"]) if inv else charged.amount
    if left <= 0:
        return None
    amount = Money(amount=min(left, charged.amount), currency=charged.currency)
    issued = local_date(uow.now(), account.time_zone)
    number, seq = docs.next_number(uow.conn, "CN", issued.year)
    docs.insert_credit_note(uow.conn, number=number, year=issued.year, seq=seq, customer_id=customer_id,
                            order_id=paid["order_id"], invoice_number=inv["invoice_number"] if inv else None,
                            currency=amount.currency, amount=amount.amount, reason=reason, issue_date=issued,
                            now=uow.now(), journal_id=journal_id)
    store.book(uow.conn, journal_id, credit_note_journal(customer_id, amount, number), customer_id=customer_id,
               order_id=paid["order_id"], booked_at=uow.now(), due_on=None, document=number)
    if inv:
        docs.mark_credited(uow.conn, inv["invoice_number"], amount.amount)
    settle(uow, customer_id, [inv["invoice_number"]] if inv else [])
    uow.emit(CreditNoteIssued(credit_note_number=number, customer_id=customer_id, order_id=paid["order_id"],
                              invoice_number=inv["invoice_number"] if inv else None, amount=amount,
                              reason=reason[:2000] or "order cancelled", issue_date=issued, issued_at=uow.now()),
             event_id=deterministic_id("CreditNoteIssued", number))
    released = release_hold_if_paid(uow, customer_id)
    account_changed(uow, customer_id, "release" if released else "credit_note")
    return number
