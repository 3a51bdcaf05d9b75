"""The JSON endpoints (faust web views) and /metrics, /healthz, /readyz.

Every JSON answer carries ``as_of``: the next offset per topic partition the figures include,
computed in the same event-loop turn as the figures, so anyone can recompute them from exactly
those records (the oracle tests do). Times in query strings are RFC 3339 or relative to now
(``2h``, ``7d``: that long ago); ``since`` is inclusive, ``until`` exclusive.

The figures (revenue per SKU, receivables, each customer's ordering cadence) are for analysts:
every /analytics/* endpoint wants an API key of the role analyst or operator, as a Bearer token
or an X-API-Key header, checked against the same keys as every service (runtime/auth.py KeyRing:
SALESBUS_API_KEYS / SALESBUS_API_KEYS_FILE, re-read when the file changes). 401 without a usable
key (saying why: missing, unknown, expired, revoked), 403 for another role. /metrics, /healthz
and /readyz stay open for Prometheus and probes: the gauges are per SKU, stage and currency,
never per customer.
"""
from __future__ import annotations

from datetime import datetime

import faust
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from runtime.access import ANALYSTS
from runtime.auth import KeyRing
from runtime.tap import parse_when
from services.analytics import aggregates, metrics


#: who may read the figures
READERS = ANALYSTS


class BadRequest(ValueError):
    pass


def refusal(ring: KeyRing, headers) -> tuple[int, str] | None:
    """(401 or 403, why) when the request's key may not read the figures; None when it may."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else headers.get("X-API-Key")
    if not key:
        return 401, "missing API key (analytics wants an analyst or operator key: `salesbus key issue analyst NAME`)"
    principal, why = ring.check(key)
    if principal is None:
        return 401, why
    if principal.role not in READERS:
        return 403, f"analytics needs the role {' or '.join(READERS)}"
    return None


def _when(query, name: str, now: datetime) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_when(raw, now)
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from exc


def _window(query, default: str) -> str:
    window = query.get("window", default)
    if window not in aggregates.WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(aggregates.WINDOWS)}")
    return window


def register(app: faust.App, analytics, keyring: KeyRing | None = None) -> None:
    facts = analytics.facts()
    ring = keyring or KeyRing.from_env()

    def answer(web, request, compute):
        refused = refusal(ring, request.headers)
        if refused is not None:
            status, why = refused
            return web.json({"error": why}, status=status,
                            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
        try:
            now = analytics.clock.now()
            body = compute(request.query, now)
        except BadRequest as exc:
            return web.json({"error": str(exc)}, status=400)
        if body is None:
            return web.json({"error": "not found"}, status=404)
        return web.json({**body, "as_of": analytics.as_of()})

    @app.page("/analytics/revenue")
    async def revenue(web, request):
        """Booked revenue per tumbling window (?window=day|hour), SKU and currency."""
        def compute(q, now):
            w, since, until = _window(q, "day"), _when(q, "since", now), _when(q, "until", now)
            return analytics.view("revenue", lambda: aggregates.revenue(facts, w, since, until), w, since, until)
        return answer(web, request, compute)

    @app.page("/analytics/funnel")
    async def funnel(web, request):
        """Checkout funnel of the orders placed in each window (?window=hour|day): counts and rates."""
        def compute(q, now):
            w, since, until = _window(q, "hour"), _when(q, "since", now), _when(q, "until", now)
            return analytics.view("funnel", lambda: aggregates.funnel(facts, w, since, until), w, since, until)
        return answer(web, request, compute)

    @app.page("/analytics/latency")
    async def latency(web, request):
        """p50/p95/p99 seconds placed -> confirmed and confirmed -> shipped."""
        def compute(q, now):
            since, until = _when(q, "since", now), _when(q, "until", now)
            return analytics.view("latency", lambda: aggregates.latency(facts, since, until), since, until)
        return answer(web, request, compute)

    @app.page("/analytics/standing-orders")
    async def standing_orders(web, request):
        """Active standing orders and the units they will place in the next 30/60/90 days (?at=)."""
        def compute(q, now):
            at = _when(q, "at", now) or now
            return analytics.view("standing", lambda: aggregates.standing_orders(facts, at), at)
        return answer(web, request, compute)

    @app.page("/analytics/receivables")
    async def receivables(web, request):
        """Receivables outstanding and days sales outstanding per currency (?days=90: the sales
        period; ?at=: its end, default now; outstanding is always the accounts' latest state)."""
        def compute(q, now):
            at = _when(q, "at", now) or now
            raw = q.get("days", str(aggregates.DSO_DAYS_DEFAULT))
            if not raw.isdigit() or not 1 <= int(raw) <= 3660:
                raise BadRequest("days must be a whole number from 1 to 3660")
            days = int(raw)
            return analytics.view("receivables", lambda: aggregates.receivables(facts, at, days), at, days)
        return answer(web, request, compute)

    @app.page("/analytics/customers")
    async def customers(web, request):
        """Ordering cadence of every customer."""
        return answer(web, request, lambda q, now: {
            "customers": analytics.view("customers", lambda: aggregates.customers(facts))})

    @app.page("/analytics/customers/{customer_id}")
    async def customer(web, request, customer_id):
        """One customer's cadence: last order, median interval, when the next order is expected."""
        return answer(web, request, lambda q, now: analytics.view(
            "customer", lambda: aggregates.customer(facts, customer_id), customer_id))

    @app.page("/analytics/status")
    async def status(web, request):
        """Facts per table, later-stage facts still waiting for their OrderPlaced, readiness."""
        ok, why = analytics.ready()
        return answer(web, request, lambda q, now: {
            "ready": ok, "state": why, "facts": {name: len(t) for name, t in facts.items()},
            "awaiting_order_placed": aggregates.awaiting_order_placed(facts)})

    @app.page("/metrics")
    async def prometheus(web, request):
        metrics.refresh(analytics)
        # aiohttp refuses a charset inside content_type=, so the exposition type goes in as a header
        return web.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web, request):
        return web.text("ok\n")

    @app.page("/readyz")
    async def readyz(web, request):
        ok, why = analytics.ready()
        return web.text(why + "\n", status=200 if ok else 503)
