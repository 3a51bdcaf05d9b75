"""Supplier accounts over HTTP: operators open and change them; customers read their own."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.access import ACCOUNT_READERS
from runtime.auth import Principal, require
from runtime.business_settings import tokens_sentence
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas.types import (ID_BOUNDS, BookAmount, Currency, DecimalString, Email, KnownTimeZone,
                           Language)
from services.payments import commands, money_api, store
from services.payments.ledger import SupplierAccount

CustomerId = Annotated[str, Path(**{**ID_BOUNDS, "max_length": 64}, description="the customer (organisation) id")]


class AccountTerms(BaseModel):
    """What an operator sets on a supplier account; the open balance moves only with charges."""
    model_config = ConfigDict(extra="forbid")
    credit_limit: BookAmount = Field(description="decimal string, at most 999999999999.99, e.g. \"5000.00\"")
    currency: Currency
    payment_terms_days: int = Field(ge=0, le=365, description="net terms, e.g. 30 for net 30")
    status: Literal["active", "suspended"] = "active"
    terms_kind: Literal["net", "eom", "eom_net"] = Field(
        default="net", description="net: issue + N days; eom: end of the month of issue + N days; "
                                   "eom_net: end of the issue month + N days")
    time_zone: KnownTimeZone = Field(default="UTC", description="the customer's IANA time zone: invoice, due and "
                                                                "statement dates are its local dates")
    billing_email: Email | None = Field(default=None, description="where invoices and reminders are emailed")
    language: Language = Field(default="en", description="language of the billing emails")

class StatementLine(BaseModel):
    entry_id: int
    journal_id: str
    order_id: str | None
    document: str | None = Field(default=None, description="invoice, payment reference or credit note number")
    side: Literal["debit", "credit"]
    amount: DecimalString
    currency: str
    booked_at: datetime
    due_on: date | None


class AccountView(BaseModel):
    customer_id: str
    credit_limit: DecimalString
    open_balance: DecimalString
    available_credit: DecimalString = Field(description="credit limit minus open balance; negative when over")
    currency: str
    payment_terms_days: int
    status: Literal["active", "suspended"]
    terms_kind: Literal["net", "eom", "eom_net"]
    time_zone: str
    billing_email: str | None
    language: str
    unapplied_credit: DecimalString = Field(description="received or credited, not yet applied to an invoice")
    on_hold: bool = Field(description="overdue invoices: new account orders are declined until they are paid")
    opened_at: datetime
    changed_at: datetime
    recent_entries: list[StatementLine] = Field(description="the customer's receivable entries, newest first")


class CurrencyTotals(BaseModel):
    currency: str
    debits: DecimalString
    credits: DecimalString
    entries: int
    balanced: bool


class LedgerBalance(BaseModel):
    balanced: bool = Field(description="debits equal credits in every currency and every journal, and every "
                                       "account's open balance equals its receivable entries")
    currencies: list[CurrencyTotals]
    unbalanced_journals: list[str]
    accounts_not_matching_receivables: list[str]


def _view(conn, customer_id: str, entries: int) -> AccountView | None:
    row = store.account_row(conn, customer_id)
    if row is None:
        return None
    return AccountView(**row, available_credit=row["credit_limit"] - row["open_balance"] + row["unapplied_credit"],
                       recent_entries=[StatementLine(**e) for e in store.statement(conn, customer_id, entries)])


def description(cfg) -> str:
    """What an integrator needs besides the endpoints: the card gateway's test tokens and the
    business settings of supplier accounts, with this service's values."""
    return ("Supplier accounts (credit limits, terms, balances, invoices, payments received, statements, "
            "ageing) and the double-entry ledger of on-account sales. Errors are RFC 9457 problem+json; lists "
            f"are pages (docs/api.md).\n\nCard payments: card gateway {cfg.card_gateway!r} "
            f"(SALESBUS_CARD_GATEWAY). {tokens_sentence()}\n\nOverdue invoices: a reminder at "
            f"{cfg.overdue_reminder_days} days past due (SALESBUS_OVERDUE_REMINDER_DAYS), the account on hold "
            f"(new account orders declined) beyond {cfg.overdue_hold_after_days} days "
            f"(SALESBUS_OVERDUE_HOLD_AFTER_DAYS), checked at {cfg.overdue_local_hour}:00 in the account's time "
            "zone (SALESBUS_OVERDUE_LOCAL_HOUR). Every account change is announced as SupplierAccountChanged "
            "with the account's version.")


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app(ctx=ctx, title="salesbus payments", description=description(ctx.settings))
    money_api.register(app, ctx)

    @app.put("/accounts/{customer_id}", response_model=AccountView,
             responses={201: {"model": AccountView, "description": "account opened"},
                        409: {"description": "the currency cannot change while the account owes money, or is not "
                                            "one the business sells in (SALESBUS_CURRENCIES)"}})
    def put_account(customer_id: CustomerId, terms: AccountTerms, response: Response,
                    operator: Principal = Depends(require("operator"))) -> AccountView:
        """Open a supplier account, or change its terms. Emits SupplierAccountChanged when anything changed."""
        supported = ctx.settings.supported_currencies()
        if terms.currency not in supported:
            raise HTTPException(409, f"accounts are kept in {', '.join(sorted(supported))}, not {terms.currency}")
        with ctx.unit_of_work() as uow:
            wanted = SupplierAccount(customer_id, terms.credit_limit, Decimal("0.00"), terms.currency,
                                     terms.payment_terms_days, terms.status, terms_kind=terms.terms_kind,
                                     time_zone=terms.time_zone, billing_email=terms.billing_email,
                                     language=terms.language)
            current = store.lock_account(uow.conn, customer_id)
            opened = current is None and store.open_account(uow.conn, wanted, operator.subject, uow.now())
            changed = False
            if not opened:
                current = current or store.lock_account(uow.conn, customer_id)  # opened concurrently
                if current.currency != terms.currency and (current.open_balance or current.unapplied_credit):
                    raise HTTPException(409, f"the account owes {current.open_balance} {current.currency}; "
                                             "its currency can change only when nothing is owed")
                changed = (current.credit_limit, current.currency, current.payment_terms_days, current.status,
                           current.terms_kind, current.time_zone, current.billing_email, current.language) != \
                    (terms.credit_limit, terms.currency, terms.payment_terms_days, terms.status, terms.terms_kind,
                     terms.time_zone, terms.billing_email, terms.language)
                if changed:
                    store.change_terms(uow.conn, wanted, operator.subject, uow.now())
            if opened or changed:
                commands.account_changed(uow, customer_id, "opened" if opened else "terms")
            view = _view(uow.conn, customer_id, 20)
        response.status_code = 201 if opened else 200
        return view

    @app.get("/accounts/{customer_id}", response_model=AccountView,
             responses={404: {"description": "the customer has no supplier account"}})
    def get_account(customer_id: CustomerId, entries: int = Query(20, ge=0, le=200),
                    who: Principal = Depends(require(*ACCOUNT_READERS))) -> AccountView:
        """The account with its open balance, available credit and recent ledger entries."""
        if not who.can_act_for_customer(customer_id):
            raise HTTPException(403, "customers may read only their own account")
        with ctx.pool.connection() as conn:
            view = _view(conn, customer_id, entries)
        if view is None:
            raise HTTPException(404, f"{customer_id} has no supplier account")
        return view

    @app.get("/ledger/balance", response_model=LedgerBalance)
    def ledger_balance(_: Principal = Depends(require("operator"))) -> LedgerBalance:
        """Proof the books balance: debits == credits per currency and per journal."""
        with ctx.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            totals = [CurrencyTotals(**t, balanced=t["debits"] == t["credits"])
                      for t in store.totals_by_currency(conn)]
            journals = store.unbalanced_journals(conn)
            mismatched = store.balances_not_matching_receivables(conn)
        return LedgerBalance(balanced=all(t.balanced for t in totals) and not journals and not mismatched,
                             currencies=totals, unbalanced_journals=journals,
                             accounts_not_matching_receivables=mismatched)

    return app
