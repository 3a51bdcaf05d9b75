"""The notifications service's HTTP API: only the runtime's operator endpoint, `GET /ops/set-aside`
(failed emails and expired parked events with their reasons, from this service's own database),
so the web console lists them beside the other services'. Emails are queued by events, not here."""
from __future__ import annotations

from fastapi import FastAPI

from runtime.http import make_app
from runtime.service import ServiceContext


def create_app(ctx: ServiceContext) -> FastAPI:
    return make_app(ctx=ctx, title="salesbus notifications",
                    description="Operators only: what the notifications service has set aside (GET /ops/set-aside).")
