"""The operator's set-aside page: per service, what it has set aside for good or is still
retrying, each item with its reason, beside the dead letters. Each service lists its own from its
own database (`GET /ops/set-aside`, runtime/ops_api.py), called with the operator's key; the web
service's own listings are read here the same way, from its own database."""
from __future__ import annotations

from fastapi import APIRouter, Request

from runtime import ops_api
from services.web.app import Web
from services.web.messages import WEB_MESSAGES
from services.web.upstream import SERVICES_CALLED, UpstreamError

#: every service with an HTTP API (notifications' has only this endpoint)
LISTED = SERVICES_CALLED + ("notifications",)


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/ops/set-aside")
    def set_aside(request: Request):
        s = web.person(request, "operator")
        f = web.formats(request)
        reports = []
        for name in LISTED:
            try:
                reports.append(web.api.get(s.key, name, "/ops/set-aside"))
            except UpstreamError as exc:
                reports.append({"service": name, "unavailable": exc.detail, "listings": []})
        reports.append(ops_api.report(web.ctx).model_dump())
        for report in reports:
            for listing in report["listings"]:
                key = "aside_" + listing["name"].replace(" ", "_")
                # a listing this catalogue does not know yet shows under its own (English) name
                listing["label"] = f.t(key) if key in WEB_MESSAGES["en"] else listing["name"]
        return web.render(request, "set_aside.html", reports=reports)

    return r
