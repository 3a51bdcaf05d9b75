"""The CRM's HTTP API for salespeople (and operators, who may do everything): customer profiles,
the customer view, the contact log and timeline here; tasks in task_api.py.

Every salesperson may read any customer and log contacts with it (colleagues cover for one
another); changing a profile is for its owning salesperson or an operator. The commands are in
commands.py; their domain errors are answered as problem+json by runtime/http.py.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, get_args

from fastapi import Depends, FastAPI, Path, Query, Request

from runtime.access import CUSTOMER_CARE
from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.pages import Page, PageParams, page, page_params
from runtime.service import ServiceContext
from schemas.events.crm import ContactChannel
from schemas.events.notifications import NotificationKind
from schemas.types import ID_BOUNDS, LINE_PATTERN
from services.crm import commands, store, task_api, task_store
from services.crm.models import IDENTIFIER, ContactIn, NewProfileIn, ProfileIn
from services.crm.tasks import Policy
from services.crm.views import (VIEW_ORDERS, VIEW_STANDING_ORDERS, CustomerSummary, EntryOut, OrderOut, ProfileOut,
                                account_out, entry_out, order_out, standing_order_out, task_out)

staff = require(*CUSTOMER_CARE)
CustomerId = Annotated[str, Path(**ID_BOUNDS, description="the customer (organisation) id")]
NO_CUSTOMER = {404: {"description": "no such customer in the CRM"}}
TIMELINE_KINDS = ("contact", "email", "order")
TIMELINE_SUBTYPES = (*get_args(ContactChannel), *get_args(NotificationKind),
                     *(f"order_{m}" for m in ("placed", "confirmed", "shipped", "cancelled")))
TimelineKind = Literal[tuple(dict.fromkeys((*TIMELINE_KINDS, *TIMELINE_SUBTYPES)))]  # type: ignore[valid-type]


def description(policy: Policy) -> str:
    """The business settings a salesperson's day depends on, as this CRM runs them."""
    return (
        "Customer profiles and the customer view (orders, standing orders, supplier account), contact log, "
        "timeline and salesperson tasks. Role salesperson (acts as itself) or operator; API key as Bearer. "
        "Errors are RFC 9457 problem+json; lists are pages (docs/api.md).\n\n"
        "Business settings (environment, shown with this service's values):\n"
        f"- follow-up call after a shipment: due {policy.follow_up_days:g} days after it shipped "
        "(SALESBUS_CRM_FOLLOW_UP_DAYS)\n"
        f"- task reminders: emailed {policy.reminder_lead.total_seconds() / 3600:g} hours before a task is due, "
        "at once for a task due sooner (SALESBUS_CRM_REMINDER_LEAD_HOURS)\n"
        f"- reorder call: {policy.reorder_lead_days:g} days before the next order is expected from the "
        f"customer's cadence (median gap of at least {policy.min_orders_for_cadence} ordering occasions; "
        "SALESBUS_CRM_REORDER_LEAD_DAYS)\n"
        "- a customer first heard of through an order gets a profile from its delivery details "
        f"(source first_order, needs_review), owned by salesperson {policy.new_customer_salesperson!r} "
        "(SALESBUS_CRM_NEW_CUSTOMER_SALESPERSON) until a salesperson completes it with PUT")


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app(ctx=ctx, title="salesbus crm", description=description(Policy.from_settings(ctx.settings)))
    _profile_routes(app, ctx)
    _contact_routes(app, ctx)
    app.include_router(task_api.router(ctx))
    return app


def profile_out(conn, customer: dict, now) -> ProfileOut:
    cid = customer["customer_id"]
    orders_total, orders = store.orders_page(conn, cid, limit=VIEW_ORDERS, offset=0)
    return ProfileOut(
        customer_id=cid, name=customer["name"], segment=customer["segment"], language=customer["language"],
        time_zone=customer["time_zone"],
        salesperson={"id": customer["salesperson_id"], "email": customer["salesperson_email"],
                     "time_zone": customer["salesperson_time_zone"], "language": customer["salesperson_language"]},
        contacts=[{"name": c["name"], "role": c["role"], "email": c["email"], "phone": c["phone"],
                   "primary": c["is_primary"]} for c in store.contacts(conn, cid)],
        supplier_account=account_out(store.supplier_account(conn, cid)),
        last_contact_at=store.last_contact_at(conn, cid),
        open_tasks=[task_out(t, now) for t in task_store.open_tasks_of_customer(conn, cid)],
        recent_orders=[order_out(o) for o in orders], orders_total=orders_total,
        standing_orders=[standing_order_out(s) for s in store.standing_orders_of(conn, cid, VIEW_STANDING_ORDERS)],
        source=customer["source"], needs_review=customer["needs_review"], first_order_id=customer["first_order_id"],
        first_order_delivery=customer["delivery"], created_at=customer["created_at"],
        updated_at=customer["updated_at"])


def _profile_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.post("/customers", status_code=201, tags=["customers"], response_model=ProfileOut,
              responses={409: {"description": "a profile with this customer id exists (profile-exists)"}})
    def create_customer(body: NewProfileIn, principal: Principal = Depends(staff)) -> ProfileOut:
        with ctx.unit_of_work() as uow:
            return profile_out(uow.conn, commands.create_profile(uow, body.customer_id, body), uow.now())

    @app.put("/customers/{customer_id}", tags=["customers"], response_model=ProfileOut, responses=NO_CUSTOMER)
    def update_customer(customer_id: CustomerId, body: ProfileIn, principal: Principal = Depends(staff)) -> ProfileOut:
        """Replaces the profile, key contacts included; a profile learned from a first order is then
        reviewed (needs_review false). For the owning salesperson or an operator."""
        with ctx.unit_of_work() as uow:
            return profile_out(uow.conn, commands.update_profile(uow, principal, customer_id, body), uow.now())

    @app.get("/customers/{customer_id}", tags=["customers"], response_model=ProfileOut, responses=NO_CUSTOMER)
    def get_customer(customer_id: CustomerId, principal: Principal = Depends(staff)) -> ProfileOut:
        """The customer view: profile, supplier account, open tasks, latest orders and standing orders.
        Kept by the CRM from payments', orders' and the scheduler's events (it reads no other service's
        tables), so it may trail them by the time those events take to arrive."""
        with ctx.pool.connection() as conn:
            return profile_out(conn, commands.customer_or_404(conn, customer_id), ctx.clock.now())

    @app.get("/customers/{customer_id}/orders", tags=["customers"], response_model=Page[OrderOut],
             responses=NO_CUSTOMER)
    def customer_orders(request: Request, customer_id: CustomerId, params: PageParams = Depends(page_params),
                        principal: Principal = Depends(staff)):
        """The customer's orders as the CRM heard of them, newest first (the orders service has the full
        order: GET /orders/{order_id} there)."""
        with ctx.pool.connection() as conn:
            commands.customer_or_404(conn, customer_id)
            total, rows = store.orders_page(conn, customer_id, limit=params.limit, offset=params.offset)
        return page(request, [order_out(r) for r in rows], params, total)

    @app.get("/customers", tags=["customers"], response_model=Page[CustomerSummary])
    def list_customers(request: Request,
                       q: str | None = Query(None, min_length=1, max_length=100, pattern=LINE_PATTERN,
                                             description="find by customer id, name or e-mail (part of it, any case)"),
                       no_contact_days: int | None = Query(None, ge=0, le=3650,
                                                           description="only those not contacted for N days"),
                       salesperson_id: str | None = Query(None, pattern=IDENTIFIER, description="only this owner's"),
                       needs_review: bool | None = Query(None, description="true: only profiles learned from a "
                                                                          "first order and not yet completed"),
                       params: PageParams = Depends(page_params),
                       principal: Principal = Depends(staff)):
        """Customers by last conversation (visits, calls, emails, meetings; web visits do not count),
        never-contacted first."""
        since = ctx.clock.now() - timedelta(days=no_contact_days) if no_contact_days is not None else None
        with ctx.pool.connection() as conn:
            total, rows = store.customers_by_last_contact(
                conn, no_contact_since=since, salesperson_id=salesperson_id, q=q.strip() or None if q else None,
                needs_review=needs_review, limit=params.limit, offset=params.offset)
        return page(request, rows, params, total)


def _contact_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.post("/customers/{customer_id}/contacts", status_code=201, tags=["contact log"], response_model=EntryOut,
              responses={**NO_CUSTOMER, 409: {"description": "occurred_at is in the future (time-conflict)"}})
    def log_contact(customer_id: CustomerId, body: ContactIn, principal: Principal = Depends(staff)) -> EntryOut:
        """Records an interaction and announces it as ContactLogged (analysts see every contact)."""
        with ctx.unit_of_work() as uow:
            return entry_out(commands.log_contact(uow, principal, customer_id, body))

    @app.get("/customers/{customer_id}/timeline", tags=["contact log"], response_model=Page[EntryOut],
             responses=NO_CUSTOMER)
    def timeline(request: Request, customer_id: CustomerId,
                 kind: TimelineKind | None = Query(None, description="contact, email or order; or a channel / email "
                                                                     "kind / order milestone such as phone_call or "
                                                                     "order_shipped"),
                 order: Literal["newest", "oldest"] = Query("newest"),
                 params: PageParams = Depends(page_params),
                 principal: Principal = Depends(staff)):
        """Contact log, our emails and order milestones of one customer, merged in time order."""
        with ctx.pool.connection() as conn:
            commands.customer_or_404(conn, customer_id)
            total, rows = store.timeline_page(conn, customer_id, kind=kind, newest_first=order == "newest",
                                              limit=params.limit, offset=params.offset)
        return page(request, [entry_out(r) for r in rows], params, total)
