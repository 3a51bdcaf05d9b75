"""What the CRM's HTTP API answers: one response model per shape (the OpenAPI document is made
from these), and the functions that turn rows into them."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtime.pages import Page
from schemas.events.scheduling import Interval
from schemas.types import Delivery, StandingLine

Source = Literal["crm", "first_order"]


class SalespersonOut(BaseModel):
    id: str
    email: str
    time_zone: str
    language: str


class KeyContactOut(BaseModel):
    name: str
    role: str
    email: str | None
    phone: str | None
    primary: bool


class SupplierAccountOut(BaseModel):
    """The account as payments last announced it (SupplierAccountChanged, highest version)."""
    status: Literal["active", "suspended"]
    currency: str
    credit_limit: str = Field(description="decimal string")
    open_balance: str = Field(description="what the customer owes on open invoices, decimal string")
    available_credit: str | None = Field(description="credit limit - open balance + unapplied credit, 0 when over")
    on_hold: bool | None = Field(description="an overdue account is on hold: new account orders are declined")
    payment_terms_days: int
    as_of: datetime = Field(description="when payments made this change")
    version: int | None = Field(description="payments' announcement counter for the account")


class TaskOut(BaseModel):
    task_id: str
    customer_id: str
    customer_name: str
    salesperson_id: str
    kind: Literal["reorder_call", "order_follow_up", "custom"]
    title: str
    notes: str
    status: Literal["open", "done", "cancelled"]
    due_at: datetime
    overdue: bool = Field(description="open and past its due time")
    automatic: bool = Field(description="opened by the CRM from an event (shipment, cadence, overdue invoice)")
    reminder_id: str = Field(description="the reminder timer that is live for the current due time")
    created_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class OrderOut(BaseModel):
    """An order as the CRM heard of it from the orders' events."""
    order_id: str
    status: Literal["placed", "confirmed", "shipped", "cancelled"]
    placed_at: datetime
    channel: str
    total: str = Field(description="decimal string, in `currency`")
    currency: str
    confirmation_number: str | None
    shipped_at: datetime | None
    cancelled_at: datetime | None
    standing_order_id: str | None = Field(description="set when the order is an occurrence of a standing order")


class StandingOrderOut(BaseModel):
    """A standing order as its latest StandingOrderChanged left it."""
    standing_order_id: str
    status: Literal["active", "paused", "cancelled", "ended"]
    interval: Interval
    start_date: date
    time_zone: str
    end_date: date | None
    lines: list[StandingLine]
    changed_at: datetime


#: orders and standing orders shown in the customer view; the orders' full list is a page of its own
VIEW_ORDERS = 10
VIEW_STANDING_ORDERS = 50


class ProfileOut(BaseModel):
    """A customer from one place: profile, key contacts, owner, supplier account, open tasks, latest
    orders and standing orders; all kept by the CRM from the events it consumes."""
    customer_id: str
    name: str
    segment: str
    language: str
    time_zone: str
    salesperson: SalespersonOut
    contacts: list[KeyContactOut]
    supplier_account: SupplierAccountOut | None = Field(description="null: payments announced no account")
    last_contact_at: datetime | None = Field(description="last conversation (web visits do not count)")
    open_tasks: list[TaskOut]
    recent_orders: list[OrderOut] = Field(max_length=VIEW_ORDERS, description=(
        f"the latest {VIEW_ORDERS} orders, newest first; all of them: GET /customers/{{id}}/orders"))
    orders_total: int = Field(ge=0, description="how many orders the CRM knows of for this customer")
    standing_orders: list[StandingOrderOut] = Field(max_length=VIEW_STANDING_ORDERS, description=(
        "active and paused first, then ended and cancelled"))
    source: Source = Field(description="crm: created by a salesperson; first_order: learned from the customer's "
                                       "first order")
    needs_review: bool = Field(description="learned from an order and not yet completed by a salesperson (PUT)")
    first_order_id: str | None = Field(description="the order a learned profile was made from")
    first_order_delivery: Delivery | None = Field(description="that order's delivery details")
    created_at: datetime
    updated_at: datetime


class CustomerSummary(BaseModel):
    customer_id: str
    name: str
    segment: str
    salesperson_id: str
    last_contact_at: datetime | None
    source: Source
    needs_review: bool


class EntryOut(BaseModel):
    entry_id: str
    kind: Literal["contact", "email", "order"]
    subtype: str = Field(description="the channel, email kind or order milestone (order_shipped, ...)")
    occurred_at: datetime
    summary: str
    contact_name: str | None
    salesperson_id: str | None
    source: str
    order_id: str | None
    detail: dict[str, Any] = Field(description="kind-specific facts (order total, tracking number, recipient)")


class MyTasks(Page[TaskOut]):
    """A page of one salesperson's open tasks, soonest due first, with their day."""
    salesperson_id: str
    time_zone: str = Field(description="the salesperson's IANA zone: 'today' is their calendar day")
    today: date
    due: Literal["today", "overdue", "all"]


def account_out(account: dict | None) -> SupplierAccountOut | None:
    if account is None:
        return None
    money = lambda v: None if v is None else format(v, "f")  # noqa: E731
    return SupplierAccountOut(status=account["status"], currency=account["currency"],
                              credit_limit=money(account["credit_limit"]), open_balance=money(account["open_balance"]),
                              available_credit=money(account["available_credit"]), on_hold=account["on_hold"],
                              payment_terms_days=account["payment_terms_days"], as_of=account["changed_at"],
                              version=account["version"])


def task_out(row: dict, now: datetime) -> TaskOut:
    return TaskOut(**{k: row[k] for k in ("task_id", "customer_id", "customer_name", "salesperson_id", "kind",
                                           "title", "notes", "status", "due_at", "reminder_id", "created_by",
                                           "created_at", "updated_at", "closed_at")},
                   overdue=row["status"] == "open" and row["due_at"] < now, automatic=row["cause_key"] is not None)


def order_out(row: dict) -> OrderOut:
    return OrderOut(**{k: row[k] for k in ("order_id", "status", "placed_at", "channel", "currency",
                                           "confirmation_number", "shipped_at", "cancelled_at", "standing_order_id")},
                    total=format(row["total"], "f"))


def standing_order_out(row: dict) -> StandingOrderOut:
    return StandingOrderOut(standing_order_id=row["standing_order_id"], status=row["status"],
                            interval=Interval(every=row["interval_every"], unit=row["interval_unit"]),
                            start_date=row["start_date"], time_zone=row["time_zone"], end_date=row["end_date"],
                            lines=row["lines"], changed_at=row["changed_at"])


def entry_out(row: dict) -> EntryOut:
    return EntryOut(**{k: row[k] for k in EntryOut.model_fields})
