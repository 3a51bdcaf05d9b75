"""Money on supplier accounts over HTTP: invoices, payments received, statements, ageing and the
trial balance. Customers see their own account's documents only; operators see and record any."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runtime.access import ACCOUNT_READERS
from runtime.auth import Principal, require
from runtime.pages import Page, PageParams, page, page_params
from runtime.service import ServiceContext
from schemas import Money
from schemas.types import ID_BOUNDS, BookAmount, Currency, Day, DecimalString, Language, OrderLine, line, text
from services.payments import commands, store
from services.payments import money_store as docs
from services.payments.books import BUCKETS, StatementLine, ageing, statement_period, statement_totals
from services.payments.invoice_pdf import NoFont, render_invoice

CustomerId = Annotated[str, Path(**{**ID_BOUNDS, "max_length": 64}, description="the customer (organisation) id")]
Number = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Z]{2,3}-[0-9]{4}-[0-9]{6}$",
                             description="e.g. INV-2026-000042")]
DocumentNumber = line(40, 1)
reader = require(*ACCOUNT_READERS)
#: the longest statement period one request may ask for (a bound on the rows it reads)
MAX_STATEMENT_DAYS = 3660
#: the most documents one statement lists (a bound on the answer's size)
MAX_STATEMENT_DOCUMENTS = 5000


#: BookAmount's shape, above zero (the schema says what the validator below checks)
POSITIVE_AMOUNT_PATTERN = r"^(?![0.]*$)[0-9]{1,12}(\.[0-9]{1,2})?$"


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payer_reference: str = Field(**ID_BOUNDS, description="the payer's (bank's) reference; recording it again "
                                                          "with the same amount is the same payment")
    amount: BookAmount = Field(description="decimal string above zero, e.g. \"250.00\"",
                               json_schema_extra={"pattern": POSITIVE_AMOUNT_PATTERN})
    currency: Currency = Field(description="the account's currency (another is a 409)")

    @field_validator("amount")
    @classmethod
    def _above_zero(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("a payment received must be more than zero")
        return v
    received_on: Day | None = Field(default=None, description="value date; default: today in the account's zone")
    invoice_numbers: list[DocumentNumber] = Field(default_factory=list, max_length=100,
                                                  description="invoices to pay first; the rest goes oldest first")
    note: text(500) | None = None


class Allocated(BaseModel):
    source_kind: Literal["payment", "credit_note"]
    source_id: str
    amount: DecimalString
    allocated_at: datetime


class InvoiceView(BaseModel):
    invoice_number: str
    customer_id: str
    order_id: str
    currency: str
    total: DecimalString
    tax_total: DecimalString
    open_amount: DecimalString
    credited: DecimalString
    status: Literal["open", "paid", "credited"]
    lines: list[OrderLine]
    issue_date: date
    due_date: date
    issued_at: datetime
    allocations: list[Allocated] = []


class PaymentView(BaseModel):
    payment_id: str
    payer_reference: str
    customer_id: str
    amount: DecimalString
    currency: str
    unapplied: DecimalString = Field(description="not applied to any invoice: kept as the customer's credit")
    received_on: date
    recorded_at: datetime


class StatementEntry(BaseModel):
    date: date
    kind: Literal["invoice", "payment", "credit_note"]
    document: str
    amount: DecimalString = Field(description="how the line moves the balance: invoices +, payments and credits -")
    balance: DecimalString


class Statement(BaseModel):
    customer_id: str
    currency: str
    time_zone: str
    period_from: date
    period_to: date
    opening_balance: DecimalString
    invoices: DecimalString
    payments: DecimalString
    credit_notes: DecimalString
    closing_balance: DecimalString = Field(description="opening + invoices - payments - credit notes")
    lines: list[StatementEntry]

    @model_validator(mode="after")
    def _adds_up(self) -> "Statement":
        if self.opening_balance + self.invoices - self.payments - self.credit_notes != self.closing_balance:
            raise ValueError("statement does not add up")
        return self


class Ageing(BaseModel):
    customer_id: str
    currency: str
    time_zone: str
    as_of: date = Field(description="the customer's local date")
    buckets: dict[str, DecimalString] = Field(description=f"open amounts by days overdue: {', '.join(BUCKETS)}")
    total_open: DecimalString


class TrialBalanceLine(BaseModel):
    account: str
    currency: str
    debits: DecimalString
    credits: DecimalString
    balance: DecimalString = Field(description="debits - credits")


class TrialBalance(BaseModel):
    balanced: bool = Field(description="in every currency the balances add up to zero")
    totals: dict[str, DecimalString] = Field(description="sum of balances per currency (zero when balanced)")
    accounts: list[TrialBalanceLine]


def _invoice_view(conn, row: dict, with_allocations: bool) -> InvoiceView:
    status = "open" if row["open_amount"] > 0 else ("credited" if row["credited"] == row["total"] else "paid")
    return InvoiceView(**{k: row[k] for k in InvoiceView.model_fields if k in row and k != "lines"},
                       lines=row["lines"], status=status,
                       allocations=docs.allocations_of(conn, row["invoice_number"]) if with_allocations else [])


def _own(who: Principal, customer_id: str) -> None:
    if not who.can_act_for_customer(customer_id):
        raise HTTPException(403, "customers may read only their own account")


def _account_or_404(conn, customer_id: str) -> dict:
    row = store.account_row(conn, customer_id)
    if row is None:
        raise HTTPException(404, f"{customer_id} has no supplier account")
    return row


def register(app: FastAPI, ctx: ServiceContext) -> None:
    @app.get("/invoices", response_model=Page[InvoiceView])
    def list_invoices(request: Request, customer_id: str | None = Query(None, **{**ID_BOUNDS, "max_length": 64}),
                      open_only: bool = Query(False, alias="open", description="only invoices with money open"),
                      params: PageParams = Depends(page_params), who: Principal = Depends(reader)):
        """Invoices, newest first: a customer's own (customer_id defaults to the caller), any for operators."""
        if who.role == "customer":
            customer_id = customer_id or who.subject
            _own(who, customer_id)
        with ctx.pool.connection() as conn:
            total, rows = docs.invoices(conn, customer_id, open_only, params.limit, params.offset)
            return page(request, [_invoice_view(conn, r, False) for r in rows], params, total)

    # registered before /invoices/{number}: that path would take "INV-….pdf" as a (malformed) number
    @app.get("/invoices/{number}.pdf", response_class=Response,
             responses={200: {"description": "the invoice as the email attaches it",
                              "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                        404: {"description": "no such invoice"},
                        503: {"description": "this deployment has no font to print the invoice with"}})
    def get_invoice_pdf(number: Number, language: Language | None = Query(
                            None, description="default: the account's billing language"),
                        who: Principal = Depends(reader)) -> Response:
        """The invoice as a PDF (the same document the invoice email attaches); the same access as
        the JSON invoice: customers their own, operators any."""
        with ctx.pool.connection() as conn:
            row = docs.invoice(conn, number)
            if row is None or not who.can_act_for_customer(row["customer_id"]):
                raise HTTPException(404, f"no invoice {number}")
            account = store.account_row(conn, row["customer_id"])
        try:
            pdf = render_invoice(row, account, language)
        except NoFont as exc:
            raise HTTPException(503, str(exc)) from None
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{number}.pdf"'})

    @app.get("/invoices/{number}", response_model=InvoiceView, responses={404: {"description": "no such invoice"}})
    def get_invoice(number: Number, who: Principal = Depends(reader)) -> InvoiceView:
        with ctx.pool.connection() as conn:
            row = docs.invoice(conn, number)
            if row is None or not who.can_act_for_customer(row["customer_id"]):
                raise HTTPException(404, f"no invoice {number}")  # another's invoice is not even confirmed
            return _invoice_view(conn, row, True)

    @app.post("/accounts/{customer_id}/payments", response_model=PaymentView, status_code=201,
              responses={200: {"model": PaymentView, "description": "this payer reference was already recorded"},
                         404: {"description": "no supplier account"},
                         409: {"description": "the payer reference is recorded for another payment"},
                         422: {"description": "not in the account's currency, not above zero, or more credit than "
                                            "the books hold"}})
    def post_payment(customer_id: CustomerId, body: PaymentIn, response: Response,
                     operator: Principal = Depends(require("operator"))) -> PaymentView:
        """Record a payment received and allocate it (named invoices, then oldest first; what is
        left is kept as credit). Emits SupplierAccountChanged."""
        try:
            with ctx.unit_of_work() as uow:
                account = store.lock_account(uow.conn, customer_id)
                if account is None:
                    raise commands.NoAccount(f"{customer_id} has no supplier account")
                received = body.received_on or commands.local_date(uow.now(), account.time_zone)
                row, created = commands.record_payment(
                    uow, customer_id=customer_id, payer_reference=body.payer_reference,
                    amount=Money(amount=body.amount, currency=body.currency), received_on=received,
                    named=body.invoice_numbers, note=body.note, recorded_by=operator.subject)
        except commands.MoneyError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        response.status_code = 201 if created else 200
        return PaymentView(**{k: row[k] for k in PaymentView.model_fields})

    @app.get("/accounts/{customer_id}/statement", response_model=Statement,
             responses={404: {"description": "the customer has no supplier account"},
                        409: {"description": "the period holds too many documents: ask for a shorter one"}})
    def statement(customer_id: CustomerId, period_from: Day | None = Query(None, alias="from"),
                  period_to: Day | None = Query(None, alias="to"), who: Principal = Depends(reader)) -> Statement:
        """Statement of account for a period (default: this month so far), in the customer's local dates.
        `from` and `to` may come in either order; a period longer than 3660 days is shortened to the
        3660 days before `to` (`period_from` in the answer says where it starts)."""
        _own(who, customer_id)
        with ctx.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            account = _account_or_404(conn, customer_id)
            today = commands.local_date(ctx.clock.now(), account["time_zone"])
            end = period_to or today
            start = period_from or end.replace(day=1)
            start, end = statement_period(start, end, MAX_STATEMENT_DAYS)
            opening = docs.balance_before(conn, customer_id, start)
            rows = docs.documents_between(conn, customer_id, start, end)
        if len(rows) > MAX_STATEMENT_DOCUMENTS:
            raise HTTPException(409, f"more than {MAX_STATEMENT_DOCUMENTS} documents in the period: ask for a "
                                     "shorter one")
        lines = [StatementLine(r["day"], r["kind"], r["document"], r["amount"]) for r in rows]
        totals = statement_totals(opening, lines)
        running, entries = opening, []
        for ln in lines:
            running += ln.amount
            entries.append(StatementEntry(date=ln.on, kind=ln.kind, document=ln.document, amount=ln.amount,
                                          balance=running))
        return Statement(customer_id=customer_id, currency=account["currency"], time_zone=account["time_zone"],
                         period_from=start, period_to=end, opening_balance=totals["opening"],
                         invoices=totals["invoices"], payments=totals["payments"],
                         credit_notes=totals["credit_notes"], closing_balance=totals["closing"], lines=entries)

    @app.get("/accounts/{customer_id}/ageing", response_model=Ageing,
             responses={404: {"description": "the customer has no supplier account"}})
    def account_ageing(customer_id: CustomerId, as_of: Day | None = Query(None),
                       who: Principal = Depends(reader)) -> Ageing:
        """Open invoices by days overdue (current, 1-30, 31-60, 61-90, 90+) on the customer's local date."""
        _own(who, customer_id)
        with ctx.pool.connection() as conn:
            account = _account_or_404(conn, customer_id)
            day = as_of or commands.local_date(ctx.clock.now(), account["time_zone"])
            buckets = ageing(docs.open_invoices(conn, customer_id), day)
        return Ageing(customer_id=customer_id, currency=account["currency"], time_zone=account["time_zone"],
                      as_of=day, buckets=buckets, total_open=sum(buckets.values(), Decimal("0.00")))

    @app.get("/ledger/trial-balance", response_model=TrialBalance)
    def trial_balance(_: Principal = Depends(require("operator"))) -> TrialBalance:
        """Every ledger account's balance; in a balanced ledger they add up to zero per currency."""
        with ctx.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = docs.trial_balance(conn)
        lines = [TrialBalanceLine(**r, balance=r["debits"] - r["credits"]) for r in rows]
        totals: dict[str, Decimal] = {}
        for ln in lines:
            totals[ln.currency] = totals.get(ln.currency, Decimal("0.00")) + ln.balance
        return TrialBalance(balanced=all(v == 0 for v in totals.values()), totals=totals, accounts=lines)
