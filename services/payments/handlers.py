"""Charging placed orders once per order (card or supplier account, invoiced); payments received
from upstream feeds; refunds of cancelled orders."""
from __future__ import annotations

import logging

from runtime.uow import UnitOfWork
from runtime.errors import Rejected
from schemas import (Money, OrderCancelled, OrderPlaced, PaymentDeclined, PaymentReceived, PaymentVerified,
                     deterministic_id)
from services.payments import commands
from services.payments import money_store as docs
from services.payments import store
from services.payments.books import card_charge_journal, due_on
from services.payments.gateway import CardDeclined, CardGateway
from services.payments.ledger import decide_account_charge, ledger_entries
from services.payments.validation import Decline, check_order

log = logging.getLogger(__name__)

#: a charge reference (gateway authorisation id or ledger journal id), or why payment was refused
Outcome = str | Decline


def on_order_placed(event: OrderPlaced, uow: UnitOfWork, *, gateway: CardGateway,
                    currencies: frozenset[str]) -> None:
    """Decide the order's payment and announce it, at most once per order.

    The order is claimed before any money moves, so a second event for it (an upstream
    republish with a new event id, possibly handled by another replica at the same moment)
    waits for the first and then does nothing. A gateway timeout rolls the claim back with
    the batch; the retry charges with the same idempotency key (the order id), never twice.
    """
    cause = uow.cause.id if uow.cause else "direct"
    docs.order_lock(uow.conn, event.order_id)  # its cancellation, if one comes, waits for this decision
    claim = store.claim_payment(uow.conn, event.order_id, event.customer_id, event.payment.mode, cause, uow.now())
    if claim is None:
        log.info("order %s already has a payment decision; event %s skipped", event.order_id, cause)
        return
    if claim == "cancelled":
        # cancelled before it was paid: nothing is charged, so there is nothing to announce or refund
        log.info("order %s was cancelled before payment; not charged", event.order_id)
        store.record_declined(uow.conn, event.order_id, "order_cancelled", "the order was cancelled", uow.now())
        return
    outcome: Outcome | None = check_order(event, currencies)
    if outcome is None:
        if event.payment.mode == "card":
            outcome = _charge_card(event, gateway)
        else:
            outcome = _charge_account(event, uow)
    _announce(event, outcome, uow)


def _charge_card(order: OrderPlaced, gateway: CardGateway) -> Outcome:
    try:
        authorisation = gateway.authorise(order.payment.card_token, order.total, idempotency_key=order.order_id)
    except CardDeclined as exc:
        return Decline(exc.reason_code, exc.message)
    return authorisation.authorisation_id


def _charge_account(order: OrderPlaced, uow: UnitOfWork) -> Outcome:
    account = store.lock_account(uow.conn, order.customer_id)
    decline = decide_account_charge(account, order.total)
    if decline is not None:
        return decline
    journal_id = deterministic_id(order.order_id, "account-charge")
    issued = commands.local_date(uow.now(), account.time_zone)
    store.book(uow.conn, journal_id, ledger_entries(order.customer_id, order.total, order.order_id),
               customer_id=order.customer_id, order_id=order.order_id, booked_at=uow.now(),
               due_on=due_on(issued, account.payment_terms_days, account.terms_kind))
    commands.issue_invoice(uow, account, order, journal_id)   # and announces the account
    return journal_id


def _announce(order: OrderPlaced, outcome: Outcome, uow: UnitOfWork) -> None:
    event_id, method, now = deterministic_id(order.order_id, "payment"), order.payment.mode, uow.now()
    if isinstance(outcome, Decline):
        log.info("payment for order %s declined: %s", order.order_id, outcome.reason_code)
        store.record_declined(uow.conn, order.order_id, outcome.reason_code, outcome.message, now)
        uow.emit(PaymentDeclined(order_id=order.order_id, customer_id=order.customer_id, method=method,
                                 reason_code=outcome.reason_code, message=outcome.message, declined_at=now),
                 event_id=event_id)
    else:
        store.record_verified(uow.conn, order.order_id, order.total.amount, order.total.currency, outcome, now)
        if method == "card":
            store.book(uow.conn, deterministic_id(order.order_id, "card-charge"),
                       card_charge_journal(order.total, order.order_id), customer_id=order.customer_id,
                       order_id=order.order_id, booked_at=now, due_on=None, document=outcome)
        uow.emit(PaymentVerified(order_id=order.order_id, customer_id=order.customer_id, amount=order.total,
                                 method=method, charge_reference=outcome, verified_at=now),
                 event_id=event_id)


def on_order_cancelled(event: OrderCancelled, uow: UnitOfWork, *, gateway: CardGateway) -> None:
    """Refund a cancelled paid order once: to the card (the gateway dedupes on our refund key, so
    a retry after a timeout refunds nothing twice) or by a credit note on the account. A
    cancellation that comes before the payment decision is remembered, and the order is then
    not charged at all."""
    docs.order_lock(uow.conn, event.order_id)
    docs.remember_cancellation(uow.conn, event.order_id, event.customer_id, event.reason, event.cancelled_at)
    reference = commands.refund_cancelled_order(uow, event.order_id, event.reason, gateway)
    if reference:
        log.info("order %s cancelled: refunded (%s)", event.order_id, reference)


def on_payment_received(event: PaymentReceived, uow: UnitOfWork) -> None:
    """A bank or ERP feed reports a payment: recorded once per payer's reference and allocated."""
    source = uow.cause.source if uow.cause else "direct"
    try:
        commands.record_payment(uow, customer_id=event.customer_id, payer_reference=event.payer_reference,
                                amount=Money(amount=event.amount.amount, currency=event.amount.currency),
                                received_on=event.received_on, named=list(event.invoice_numbers),
                                note=event.note, recorded_by=f"feed:{source}"[:200])
    except commands.MoneyError as exc:
        raise Rejected(str(exc)) from exc


HANDLERS = {
    "OrderPlaced": on_order_placed,
    "OrderCancelled": on_order_cancelled,
    "PaymentReceived": on_payment_received,
}
