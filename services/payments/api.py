"""Supplier accounts over HTTP: operators open and change them; customers read their own."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas import SupplierAccountChanged
from schemas.types import Currency, DecimalString
from services.payments import store
from services.payments.ledger import SupplierAccount

CustomerId = Annotated[str, Path(min_length=1, max_length=64)]
CreditLimit = Annotated[DecimalString, Field(ge=0, max_digits=14, decimal_places=2)]


class AccountTerms(BaseModel):
    """What an operator sets on a supplier account; the open balance moves only with charges."""
    model_config = ConfigDict(extra="forbid")
    credit_limit: CreditLimit = Field(description="decimal string, e.g. \"5000.00\"")
    currency: Currency
    payment_terms_days: int = Field(ge=0, le=365, description="net terms, e.g. 30 for net 30")
    status: Literal["active", "suspended"] = "active"


class StatementLine(BaseModel):
    entry_id: int
    journal_id: str
    order_id: str
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
    return AccountView(**row, available_credit=row["credit_limit"] - row["open_balance"],
                       recent_entries=[StatementLine(**e) for e in store.statement(conn, customer_id, entries)])


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app("salesbus payments", description="Supplier accounts (credit limits, terms, balances) and "
                                                     "the double-entry ledger of on-account sales.")

    @app.put("/accounts/{customer_id}", response_model=AccountView)
    def put_account(customer_id: CustomerId, terms: AccountTerms, response: Response,
                    operator: Principal = Depends(require("operator"))) -> AccountView:
        """Open a supplier account, or change its terms. Emits SupplierAccountChanged when anything changed."""
        supported = ctx.settings.supported_currencies()
        if terms.currency not in supported:
            raise HTTPException(422, f"accounts are kept in {', '.join(sorted(supported))}, not {terms.currency}")
        with ctx.unit_of_work() as uow:
            wanted = SupplierAccount(customer_id, terms.credit_limit, Decimal("0.00"), terms.currency,
                                     terms.payment_terms_days, terms.status)
            current = store.lock_account(uow.conn, customer_id)
            opened = current is None and store.open_account(uow.conn, wanted, operator.subject, uow.now())
            changed = False
            if not opened:
                current = current or store.lock_account(uow.conn, customer_id)  # opened concurrently
                if current.currency != terms.currency and current.open_balance != 0:
                    raise HTTPException(409, f"the account owes {current.open_balance} {current.currency}; "
                                             "its currency can change only when nothing is owed")
                changed = (current.credit_limit, current.currency, current.payment_terms_days, current.status) != \
                    (terms.credit_limit, terms.currency, terms.payment_terms_days, terms.status)
                if changed:
                    store.change_terms(uow.conn, wanted, operator.subject, uow.now())
            if opened or changed:
                account = store.lock_account(uow.conn, customer_id)
                uow.emit(SupplierAccountChanged(
                    customer_id=customer_id, credit_limit=account.credit_limit, open_balance=account.open_balance,
                    currency=account.currency, payment_terms_days=account.payment_terms_days,
                    status=account.status, changed_at=uow.now()))
            view = _view(uow.conn, customer_id, 20)
        response.status_code = 201 if opened else 200
        return view

    @app.get("/accounts/{customer_id}", response_model=AccountView)
    def get_account(customer_id: CustomerId, entries: int = Query(20, ge=0, le=200),
                    who: Principal = Depends(require("operator", "customer"))) -> AccountView:
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
