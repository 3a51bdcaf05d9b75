"""The operator and warehouse console: orders of a customer and shipping them (warehouse), the
dead letters with their reasons and re-drive (operator), each service's health, lag and outbox
backlog, and who may sign in (operator)."""
from __future__ import annotations

import re

import httpx
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from runtime.dlq import DlqError, list_dead_letters, parse_position, redrive
from schemas.types import ID_BOUNDS
from runtime.auth import revoke_key
from services.web import signin, store
from services.web.app import PageError, Web, check_csrf
from services.web.i18n import LANGUAGES
from services.web.people import PersonIn
from services.web.upstream import SERVICES_CALLED, UpstreamError, metrics_urls

STAFF = ("operator", "warehouse")
METRIC = re.compile(r'^(salesbus_outbox_backlog|salesbus_consumer_lag|salesbus_stalled_seconds|salesbus_retry_records)'
                    r'\{([^}]*)\} (\S+)$')


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    api, ctx = web.api, web.ctx

    @r.get("/ops")
    def ops(request: Request, customer_id: str | None = Query(None, max_length=64), order_id: str | None =
            Query(None, max_length=200), shipped: str | None = Query(None, max_length=200)):
        s = web.person(request, *STAFF)
        with ctx.pool.connection() as conn:
            customers = store.people(conn, "customer")
        orders = web.call(api.get, s.key, "orders", f"/customers/{customer_id}/orders", limit=100)["items"] \
            if customer_id else None
        found = web.call(api.get, s.key, "orders", f"/orders/{order_id.strip()}") if order_id else None
        return web.render(request, "ops.html", customers=customers, customer_id=customer_id or "", orders=orders,
                          found=found, shipped=shipped)

    @r.post("/ops/orders/{order_id}/ship", dependencies=[Depends(check_csrf)])
    def ship(request: Request, order_id: str = Path(**ID_BOUNDS), carrier: str = Form(..., max_length=100),
             tracking_number: str = Form(..., max_length=100), distribution_centre: str = Form(..., max_length=100),
             customer_id: str = Form("", max_length=64)):
        s = web.person(request, "warehouse")
        web.call(api.post, s.key, "orders", f"/orders/{order_id}/shipments",
                 {"carrier": carrier.strip(), "tracking_number": tracking_number.strip(),
                  "distribution_centre": distribution_centre.strip()})
        back = f"/ops?customer_id={customer_id}&shipped={order_id}" if customer_id else f"/ops?shipped={order_id}"
        return RedirectResponse(back, status_code=303)

    @r.get("/ops/dead-letters")
    def dead_letters(request: Request, redriven: str | None = Query(None, max_length=300)):
        web.person(request, "operator")
        try:
            found = list_dead_letters(ctx.settings.kafka_common(), idle_exit_s=1.0)
        except DlqError as exc:
            raise PageError(502, str(exc)) from exc
        rows = [dl.as_row() | {"position": f"{dl.partition}:{dl.offset}"} for records in found.values()
                for dl in records]
        rows.sort(key=lambda r: r["at"])
        return web.render(request, "dead_letters.html", rows=rows[-100:], total=len(rows), redriven=redriven)

    @r.post("/ops/dead-letters/redrive", dependencies=[Depends(check_csrf)])
    def redrive_one(request: Request, topic: str = Form(..., max_length=260), position: str = Form(..., max_length=40)):
        web.person(request, "operator")
        try:
            done = redrive(ctx.settings.kafka_common(), topic, *parse_position(position))
        except DlqError as exc:
            raise PageError(409, str(exc)) from exc
        return RedirectResponse(f"/ops/dead-letters?redriven={done.topic}+{done.partition}:{done.offset}+"
                                f"{done.group}", status_code=303)

    @r.get("/ops/health")
    def health(request: Request):
        web.person(request, *STAFF)
        metrics = metrics_urls(ctx.settings)
        rows = []
        for name in SERVICES_CALLED + ("notifications",):
            ok, detail = api.probe(name) if name in SERVICES_CALLED else (None, "")
            row = {"name": name, "api": ok, "api_detail": detail, "ready": None, "ready_detail": "",
                   "backlog": None, "lag": None, "stalled": None, "parked": None}
            if name in metrics:
                row.update(_scrape(metrics[name]))
            rows.append(row)
        return web.render(request, "health.html", rows=rows)

    @r.get("/ops/catalog")
    def catalog(request: Request, saved: str | None = Query(None, max_length=40)):
        s = web.person(request, "operator")
        page = web.call(api.get, s.key, "cart", "/products", limit=200)
        return web.render(request, "catalog.html", products=page["items"], saved=saved)

    @r.post("/ops/catalog", dependencies=[Depends(check_csrf)])
    def save_product(request: Request, sku: str = Form(..., max_length=40), name: str = Form(..., max_length=200),
                     description: str = Form("", max_length=4000), price: str = Form(..., max_length=20),
                     currency: str = Form(..., max_length=3), active: bool = Form(False)):
        s = web.person(request, "operator")
        sku = sku.strip().upper()
        web.call(api.put, s.key, "cart", f"/products/{sku}", {
            "name": name.strip(), "description": description.strip(), "active": active,
            "unit_price": {"amount": price.strip().replace(",", "."), "currency": currency.strip().upper()}})
        return RedirectResponse(f"/ops/catalog?saved={sku}", status_code=303)

    @r.get("/ops/accounts")
    def accounts(request: Request, customer_id: str | None = Query(None, max_length=64),
                 saved: bool = False):
        s = web.person(request, "operator")
        with ctx.pool.connection() as conn:
            customers = store.people(conn, "customer")
        account = None
        if customer_id:
            try:
                account = api.get(s.key, "payments", f"/accounts/{customer_id}", entries=20)
            except UpstreamError as exc:
                if exc.status != 404:
                    raise PageError(exc.status if exc.status < 500 else 502, exc.detail) from exc
        return web.render(request, "accounts.html", customers=customers, customer_id=customer_id or "",
                          account=account, saved=saved)

    @r.post("/ops/accounts/{customer_id}", dependencies=[Depends(check_csrf)])
    def save_account(request: Request, customer_id: str = Path(max_length=64),
                     credit_limit: str = Form(..., max_length=20), currency: str = Form(..., max_length=3),
                     payment_terms_days: int = Form(..., ge=0, le=365),
                     status: str = Form("active", pattern="^(active|suspended)$")):
        s = web.person(request, "operator")
        web.call(api.put, s.key, "payments", f"/accounts/{customer_id}", {
            "credit_limit": credit_limit.strip().replace(",", "."), "currency": currency.strip().upper(),
            "payment_terms_days": payment_terms_days, "status": status})
        return RedirectResponse(f"/ops/accounts?customer_id={customer_id}&saved=1", status_code=303)

    @r.get("/ops/people")
    def people(request: Request, saved: str | None = Query(None, max_length=254)):
        web.person(request, "operator")
        with ctx.pool.connection() as conn:
            everyone = store.people(conn)
        return web.render(request, "people.html", people=everyone, saved=saved, error=None,
                          roles=("customer", "salesperson", "operator", "warehouse"), langs=LANGUAGES)

    @r.post("/ops/people", dependencies=[Depends(check_csrf)])
    def save_person(request: Request, email: str = Form(..., max_length=254), name: str = Form(..., max_length=200),
                    role: str = Form(..., max_length=20), subject: str = Form(..., max_length=64),
                    language: str = Form("en", max_length=5), time_zone: str = Form("UTC", max_length=64),
                    active: bool = Form(False)):
        web.person(request, "operator")
        try:
            body = PersonIn(email=email, name=name, role=role, subject=subject, language=language,
                            time_zone=time_zone, active=active)
        except ValidationError as exc:
            raise PageError(422, "; ".join(e["msg"] for e in exc.errors())) from None
        with ctx.unit_of_work() as uow:
            before = store.person(uow.conn, body.email)
            store.upsert_person(uow.conn, **body.model_dump(), now=uow.now())
            changed = before is not None and (before["role"], before["subject"], before["active"]) != \
                (body.role, body.subject, body.active)
            # Their sessions hold keys for the old role and subject: they sign in again.
            keys = store.delete_sessions_of(uow.conn, body.email) if changed else []
        for key in keys:
            revoke_key(signin.keys_file(ctx), key)
        return RedirectResponse(f"/ops/people?saved={body.email}", status_code=303)

    return r


def _scrape(base: str) -> dict:
    out: dict = {}
    try:
        ready = httpx.get(f"{base}/readyz", timeout=3)
        out["ready"], out["ready_detail"] = ready.status_code == 200, ready.text[:200]
        backlog = lag = stalled = parked = 0.0
        for line in httpx.get(f"{base}/metrics", timeout=3).text.splitlines():
            m = METRIC.match(line)
            if m:
                value = float(m.group(3))
                if m.group(1) == "salesbus_outbox_backlog":
                    backlog += value
                elif m.group(1) == "salesbus_consumer_lag":
                    lag += value
                elif m.group(1) == "salesbus_retry_records":
                    parked += value
                else:
                    stalled = max(stalled, value)
        out.update(backlog=int(backlog), lag=int(lag), stalled=stalled, parked=int(parked))
    except httpx.HTTPError as exc:
        out["ready"], out["ready_detail"] = False, type(exc).__name__
    return out


