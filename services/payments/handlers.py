"""Charging placed orders: once per order, by card or on the customer's supplier account."""
from __future__ import annotations

import logging

from runtime.config import settings
from runtime.uow import UnitOfWork
from schemas import OrderPlaced, PaymentDeclined, PaymentVerified, deterministic_id
from services.payments import store
from services.payments.gateway import CardDeclined, CardGateway, card_gateway
from services.payments.ledger import decide_account_charge, due_date, ledger_entries
from services.payments.validation import Decline, check_order

log = logging.getLogger(__name__)

#: a charge reference (gateway authorisation id or ledger journal id), or why payment was refused
Outcome = str | Decline


def handle_order_placed(event: OrderPlaced, uow: UnitOfWork, *, gateway: CardGateway | None = None) -> None:
    """Decide the order's payment and announce it, at most once per order.

    The order is claimed before any money moves, so a second event for it (an upstream
    republish with a new event id, possibly handled by another replica at the same moment)
    waits for the first and then does nothing. A gateway timeout rolls the claim back with
    the batch; the retry charges with the same idempotency key (the order id), never twice.
    """
    cause = uow.cause.id if uow.cause else "direct"
    if not store.claim_payment(uow.conn, event.order_id, event.customer_id, event.payment.mode, cause, uow.now()):
        log.info("order %s already has a payment decision; event %s skipped", event.order_id, cause)
        return
    outcome: Outcome | None = check_order(event, settings().supported_currencies())
    if outcome is None:
        if event.payment.mode == "card":
            outcome = _charge_card(event, gateway or card_gateway())
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
    store.book(uow.conn, journal_id, ledger_entries(order.customer_id, order.total, order.order_id),
               customer_id=order.customer_id, order_id=order.order_id, booked_at=uow.now(),
               due_on=due_date(uow.now().date(), account.payment_terms_days))
    store.raise_open_balance(uow.conn, order.customer_id, order.total.amount)
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
        uow.emit(PaymentVerified(order_id=order.order_id, customer_id=order.customer_id, amount=order.total,
                                 method=method, charge_reference=outcome, verified_at=now),
                 event_id=event_id)
