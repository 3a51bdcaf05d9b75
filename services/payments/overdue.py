"""Overdue handling: once a day, at the customer's local morning, each account with open
invoices is looked at. An invoice that has reached a reminder step (days past due, e.g. 3, 14,
30) gets one InvoiceOverdue per step (notifications emails it); an account with an invoice
overdue beyond the hold limit is put on hold (new account orders are declined with
account_on_hold) until a payment or credit note leaves nothing overdue (commands.py).

Once only, with any number of replicas: the account row is taken FOR UPDATE SKIP LOCKED (a
second worker passes it by), each (invoice, step) is a primary key claimed in the transaction
that emits its event (with a deterministic event id), and the next check time commits with them.
A step missed while nothing ran is still sent on the next morning; a late catch-up never sends
a step twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from runtime.containment import guarded_loop
from runtime.uow import UnitOfWork
from schemas import InvoiceOverdue, Money, deterministic_id
from services.payments import commands, store
from services.payments import money_store as docs
from services.payments.books import days_overdue, parse_steps, reminder_steps_due

log = logging.getLogger(__name__)
ACCOUNTS_PER_TRANSACTION = 50
POLL_S = 5.0


@dataclass(frozen=True)
class OverduePolicy:
    steps: tuple[int, ...] = (3, 14, 30)
    hold_after_days: int = 30
    local_hour: int = 8

    @classmethod
    def from_settings(cls, cfg) -> "OverduePolicy":
        return cls(parse_steps(cfg.overdue_reminder_days), cfg.overdue_hold_after_days, cfg.overdue_local_hour)


def next_local_morning(now: datetime, time_zone: str, hour: int) -> datetime:
    """The first `hour`:00 in the customer's zone strictly after `now` (as an aware datetime)."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), time(hour), zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), time(hour), zone)
    return candidate


def check_account(uow: UnitOfWork, customer_id: str, policy: OverduePolicy) -> int:
    """Send the reminder steps due and hold the account if needed; returns the reminders emitted."""
    account = store.lock_account(uow.conn, customer_id)
    today = commands.local_date(uow.now(), account.time_zone)
    sent, worst = 0, 0
    for inv in docs.open_invoices(uow.conn, customer_id):
        late = days_overdue(inv.due_date, today)
        worst = max(worst, late)
        for step in reminder_steps_due(inv.due_date, today, policy.steps):
            if docs.claim_reminder(uow.conn, inv.number, step, uow.now()):
                uow.emit(InvoiceOverdue(
                    invoice_number=inv.number, customer_id=customer_id, step_days=step, days_overdue=late,
                    open_amount=Money(amount=inv.open_amount, currency=account.currency), due_date=inv.due_date,
                    billing_email=account.billing_email, language=account.language,
                    on_hold=account.on_hold or late > policy.hold_after_days, noticed_at=uow.now()),
                    event_id=deterministic_id("InvoiceOverdue", inv.number, step))
                sent += 1
    if worst > policy.hold_after_days and not account.on_hold:
        docs.set_hold(uow.conn, customer_id, True, uow.now())
        log.info("account %s put on hold: an invoice is %d days overdue (limit %d)", customer_id, worst,
                 policy.hold_after_days)
        commands.account_changed(uow, customer_id, "hold")
    return sent


def run_due(unit_of_work: Callable, policy: OverduePolicy, limit: int = ACCOUNTS_PER_TRANSACTION) -> bool:
    """One transaction: the accounts whose local morning has come are checked and given their
    next morning. Returns True when the bound was hit (more may be due now)."""
    with unit_of_work() as uow:
        due = docs.lock_due_overdue_checks(uow.conn, uow.now(), limit)
        for customer_id in due:
            check_account(uow, customer_id, policy)
            account = store.lock_account(uow.conn, customer_id)
            # nothing owed: no more mornings until the next invoice (commands.issue_invoice)
            docs.schedule_overdue_check(uow.conn, customer_id,
                                        next_local_morning(uow.now(), account.time_zone, policy.local_hour)
                                        if account.open_balance > 0 else None)
    return len(due) >= limit


def worker(ctx) -> None:
    policy = OverduePolicy.from_settings(ctx.settings)
    guarded_loop("payments", "overdue", lambda: run_due(ctx.unit_of_work, policy), ctx.stopping,
                 stalls=ctx.stalls, idle_s=POLL_S)


worker.__name__ = "overdue"
