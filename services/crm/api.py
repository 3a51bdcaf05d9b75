"""The CRM's HTTP API for salespeople (and operators, who may do everything): customer profiles,
the contact log and timeline here; tasks in task_api.py.

Every salesperson may read any customer and log contacts with it (colleagues cover for one
another); changing a profile is for its owning salesperson or an operator.
"""
from __future__ import annotations

from datetime import timedelta
from typing import get_args

from fastapi import Depends, FastAPI, HTTPException, Query

from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas import ContactLogged, deterministic_id, new_event_id
from schemas.events.crm import ContactChannel
from schemas.events.notifications import NotificationKind
from services.crm import store, task_api, task_store
from services.crm.models import ContactIn, NewProfileIn, ProfileIn, entry_out, task_out

staff = require("salesperson", "operator")
TIMELINE_KINDS = ("contact", "email", "order")
TIMELINE_SUBTYPES = frozenset({*get_args(ContactChannel), *get_args(NotificationKind),
                               *(f"order_{m}" for m in ("placed", "confirmed", "shipped", "cancelled"))})
# An entry a little in the future is a clock difference; more is a mistake in the request.
CLOCK_SKEW = timedelta(minutes=5)


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app("salesbus crm", description="Customer profiles, contact log, timeline and salesperson tasks. "
                                               "Role salesperson (acts as itself) or operator; API key as Bearer.")
    _profile_routes(app, ctx)
    _contact_routes(app, ctx)
    app.include_router(task_api.router(ctx))
    return app


def profile_out(conn, customer: dict, now) -> dict:
    account = store.supplier_account(conn, customer["customer_id"])
    return {
        "customer_id": customer["customer_id"], "name": customer["name"], "segment": customer["segment"],
        "language": customer["language"], "time_zone": customer["time_zone"],
        "salesperson": {"id": customer["salesperson_id"], "email": customer["salesperson_email"],
                        "time_zone": customer["salesperson_time_zone"], "language": customer["salesperson_language"]},
        "contacts": [{"name": c["name"], "role": c["role"], "email": c["email"], "phone": c["phone"],
                      "primary": c["is_primary"]} for c in store.contacts(conn, customer["customer_id"])],
        "supplier_account": None if account is None else {
            "status": account["status"], "currency": account["currency"],
            "credit_limit": format(account["credit_limit"], "f"), "open_balance": format(account["open_balance"], "f"),
            "payment_terms_days": account["payment_terms_days"], "as_of": account["changed_at"]},
        "last_contact_at": store.last_contact_at(conn, customer["customer_id"]),
        "open_tasks": [task_out(t, now) for t in task_store.open_tasks_of_customer(conn, customer["customer_id"])],
        "created_at": customer["created_at"], "updated_at": customer["updated_at"],
    }


def existing_customer(conn, customer_id: str) -> dict:
    row = store.customer(conn, customer_id)
    if row is None:
        raise HTTPException(404, f"no customer {customer_id!r} in the CRM")
    return row


def _save_profile(uow, customer_id: str, body: ProfileIn, *, create: bool) -> bool:
    sp = body.salesperson
    store.upsert_salesperson(uow.conn, salesperson_id=sp.id, email=sp.email, time_zone=sp.time_zone,
                             language=sp.language, now=uow.now())
    fields = dict(customer_id=customer_id, name=body.name, segment=body.segment, language=body.language,
                  time_zone=body.time_zone, salesperson_id=sp.id, now=uow.now())
    saved = store.insert_customer(uow.conn, **fields) if create else store.update_customer(uow.conn, **fields)
    if saved:
        store.replace_contacts(uow.conn, customer_id, [c.model_dump() for c in body.contacts])
    return saved


def _profile_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.post("/customers", status_code=201, tags=["customers"],
              responses={409: {"description": "a profile with this customer id exists"}})
    def create_customer(body: NewProfileIn, principal: Principal = Depends(staff)) -> dict:
        with ctx.unit_of_work() as uow:
            if not _save_profile(uow, body.customer_id, body, create=True):
                raise HTTPException(409, f"customer {body.customer_id!r} already has a profile; PUT to change it")
            return profile_out(uow.conn, store.customer(uow.conn, body.customer_id), uow.now())

    @app.put("/customers/{customer_id}", tags=["customers"])
    def update_customer(customer_id: str, body: ProfileIn, principal: Principal = Depends(staff)) -> dict:
        """Replaces the profile, key contacts included."""
        with ctx.unit_of_work() as uow:
            current = existing_customer(uow.conn, customer_id)
            if principal.role != "operator" and principal.subject != current["salesperson_id"]:
                raise HTTPException(403, "only the owning salesperson or an operator changes a profile")
            _save_profile(uow, customer_id, body, create=False)
            return profile_out(uow.conn, store.customer(uow.conn, customer_id), uow.now())

    @app.get("/customers/{customer_id}", tags=["customers"])
    def get_customer(customer_id: str, principal: Principal = Depends(staff)) -> dict:
        with ctx.pool.connection() as conn:
            return profile_out(conn, existing_customer(conn, customer_id), ctx.clock.now())

    @app.get("/customers", tags=["customers"])
    def list_customers(no_contact_days: int | None = Query(None, ge=0, le=3650,
                                                           description="only those not contacted for N days"),
                       salesperson_id: str | None = Query(None, max_length=64, description="only this owner's"),
                       limit: int = Query(200, ge=1, le=1000),
                       principal: Principal = Depends(staff)) -> dict:
        """Customers by last conversation (visits, calls, emails, meetings; web visits do not count),
        never-contacted first."""
        now = ctx.clock.now()
        since = now - timedelta(days=no_contact_days) if no_contact_days is not None else None
        with ctx.pool.connection() as conn:
            rows = store.customers_by_last_contact(conn, no_contact_since=since, salesperson_id=salesperson_id,
                                                   limit=limit)
        return {"as_of": now, "no_contact_days": no_contact_days, "customers": rows}


def _contact_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.post("/customers/{customer_id}/contacts", status_code=201, tags=["contact log"])
    def log_contact(customer_id: str, body: ContactIn, principal: Principal = Depends(staff)) -> dict:
        """Records an interaction and announces it as ContactLogged (analysts see every contact)."""
        if principal.role == "salesperson" and body.salesperson_id not in (None, principal.subject):
            raise HTTPException(403, "a salesperson logs contacts as themselves")
        with ctx.unit_of_work() as uow:
            customer = existing_customer(uow.conn, customer_id)
            now = uow.now()
            occurred_at = body.occurred_at or now
            if occurred_at > now + CLOCK_SKEW:
                raise HTTPException(422, "occurred_at is in the future; log a contact once it has happened")
            salesperson_id = (principal.subject if principal.role == "salesperson"
                              else body.salesperson_id or customer["salesperson_id"])
            entry_id = new_event_id()
            store.add_entry(uow.conn, entry_id=entry_id, customer_id=customer_id, kind="contact",
                            subtype=body.channel, occurred_at=occurred_at, summary=body.summary,
                            contact_name=body.contact_name, salesperson_id=salesperson_id, source="crm", now=now)
            uow.emit(ContactLogged(entry_id=entry_id, customer_id=customer_id, channel=body.channel,
                                   occurred_at=occurred_at, summary=body.summary, contact_name=body.contact_name,
                                   salesperson_id=salesperson_id, source="crm"),
                     event_id=deterministic_id("ContactLogged", entry_id))
            return entry_out(store.entry(uow.conn, entry_id))

    @app.get("/customers/{customer_id}/timeline", tags=["contact log"])
    def timeline(customer_id: str,
                 kind: str | None = Query(None, description="contact, email or order; or a channel / email kind / "
                                                             "order milestone such as phone_call or order_shipped"),
                 page: int = Query(1, ge=1, le=100_000), page_size: int = Query(50, ge=1, le=200),
                 order: str = Query("newest", pattern="^(newest|oldest)$"),
                 principal: Principal = Depends(staff)) -> dict:
        """Contact log, our emails and order milestones of one customer, merged in time order."""
        if kind is not None and kind not in TIMELINE_KINDS and kind not in TIMELINE_SUBTYPES:
            raise HTTPException(422, f"unknown timeline kind {kind!r}")
        with ctx.pool.connection() as conn:
            existing_customer(conn, customer_id)
            total, rows = store.timeline_page(conn, customer_id, kind=kind, newest_first=order == "newest",
                                              limit=page_size, offset=(page - 1) * page_size)
        return {"customer_id": customer_id, "kind": kind, "order": order, "page": page, "page_size": page_size,
                "total": total, "pages": -(-total // page_size), "entries": [entry_out(r) for r in rows]}

