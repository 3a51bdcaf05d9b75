"""`GET /ops/set-aside`: what `salesbus set-aside` lists, over HTTP, for operators (the web
console shows it beside the dead letters). Every service whose app is made by
`runtime.http.make_app(..., ctx=ctx)` gets it; it reads only that service's own database.

Same listings and same guards as the command (runtime/set_aside.py): each read-only, under a
statement timeout, at most 100 rows. On a connection of its own, not one from the service's pool:
the read-only and timeout settings are per session and must not reach the service's own writes.
"""
from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from runtime import set_aside
from runtime.auth import require

#: rows per listing (the listings' own LIMIT is 100)
MAX_ROWS = 100
#: a reason or an extra column's text is cut here: a stack trace is not a page
MAX_TEXT = 2000
#: listings running at once in one process: each holds a database connection for up to the timeout
CONCURRENT = 2

Scalar = str | int | float | bool | None


class SetAsideRow(BaseModel):
    id: str | None = Field(None, max_length=MAX_TEXT, description="the item's id (event, email, order ...)")
    reason: str | None = Field(None, max_length=MAX_TEXT + 1, description="why it was set aside (cut at 2000)")
    at: str | None = Field(None, max_length=64, description="when (ISO 8601), as the listing defines it")
    extra: dict[str, Scalar] = Field(default_factory=dict, max_length=50,
                                     description="the listing's other columns (topic, attempts, kind ...)")


class SetAsideListing(BaseModel):
    name: str = Field(max_length=200)
    origin: str = Field(max_length=100, description='"runtime" (the same in every service) or the service name')
    count: int | None = Field(None, ge=0, le=MAX_ROWS, description="rows listed; null when unavailable")
    at_least: bool = Field(description="the listing filled its LIMIT: there may be more")
    unavailable: str | None = Field(None, max_length=MAX_TEXT, description="why it could not be listed")
    rows: list[SetAsideRow] = Field(max_length=MAX_ROWS)


class SetAsideReport(BaseModel):
    service: str = Field(max_length=100)
    unavailable: str | None = Field(None, max_length=MAX_TEXT,
                                    description="the service's database could not be reached at all")
    listings: list[SetAsideListing] = Field(max_length=50)


def _cut(value: Any) -> Scalar:
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def _row(row: dict[str, Any]) -> SetAsideRow:
    def text(name: str) -> str | None:
        return None if row.get(name) is None else str(_cut(row[name]))
    return SetAsideRow(id=text("id"), reason=text("reason"), at=text("at"),
                       extra={k: _cut(v) for k, v in list(row.items())[:53] if k not in ("id", "reason", "at")})


def report(ctx) -> SetAsideReport:
    found = set_aside.collect(ctx.service, ctx.settings, database_url=ctx.pool.conninfo)
    listings = [SetAsideListing(name=listing.name, origin=listing.origin,
                                count=None if listing.unavailable is not None else min(len(listing.rows), MAX_ROWS),
                                at_least=listing.limit is not None and len(listing.rows) >= listing.limit
                                or len(listing.rows) > MAX_ROWS,
                                unavailable=_cut(listing.unavailable), rows=[_row(r) for r in listing.rows[:MAX_ROWS]])
                for listing in found.listings]
    return SetAsideReport(service=found.service, unavailable=_cut(found.unavailable), listings=listings)


def router(ctx) -> APIRouter:
    r = APIRouter(tags=["operators"])
    running = threading.BoundedSemaphore(CONCURRENT)

    @r.get("/ops/set-aside", response_model=SetAsideReport, dependencies=[Depends(require("operator"))],
           responses={503: {"description": "listings already running; try again shortly"}})
    def set_aside_items() -> SetAsideReport:
        """What this service has set aside, with each item's reason: records retrying, records given
        up after retries, outbox rows the broker refused, and the service's own listings (as
        `salesbus set-aside`). Read-only, from this service's own database."""
        if not running.acquire(timeout=set_aside.STATEMENT_TIMEOUT_MS / 1000):
            raise HTTPException(503, "set-aside listings already running in this process; try again shortly")
        try:
            return report(ctx)
        finally:
            running.release()

    return r
