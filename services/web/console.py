"""The salesperson console: my tasks (overdue, today, coming up with their reminders), customers
with no recent contact, a customer's profile and timeline, log a contact, schedule / complete /
snooze / reassign a task. The CRM decides what a salesperson may change."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse

from schemas.types import ID_BOUNDS
from services.crm.tasks import Policy
from services.web.app import PageError, Web, check_csrf

CHANNELS = ("phone_call", "site_visit", "email_out", "email_in", "meeting")
TASK_KINDS = ("custom", "order_follow_up", "reorder_call")
#: "coming up": open tasks due within this many days after today, each with its reminder time
COMING_UP_DAYS = 7
#: timeline entries per page of a customer's page
TIMELINE_PAGE = 30


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    api = web.api
    # the CRM reminds this long before a task is due: the same setting, read the same way
    lead = Policy.from_settings(web.ctx.settings).reminder_lead

    def me(request: Request):
        return web.person(request, "salesperson", "operator")

    def local_to_utc(request: Request, value: str) -> str:
        try:
            local = datetime.fromisoformat(value)
        except ValueError:
            raise PageError(422, web.formats(request).t("err_datetime")) from None
        return local.replace(tzinfo=web.formats(request).tz).isoformat()

    @r.get("/console")
    def console(request: Request, no_contact_days: int = Query(14, ge=0, le=3650)):
        s = me(request)
        # one page each (the CRM's largest): a console shows a working day, not a backlog
        overdue = web.call(api.get, s.key, "crm", "/me/tasks", due="overdue", limit=200)
        today = web.call(api.get, s.key, "crm", "/me/tasks", due="today", limit=200)
        every = web.call(api.get, s.key, "crm", "/me/tasks", due="all", limit=200)
        now = web.ctx.clock.now()
        late = {t["task_id"] for t in overdue["items"]}
        today["items"] = [t for t in today["items"] if t["task_id"] not in late]  # shown once, as overdue
        shown = late | {t["task_id"] for t in today["items"]}
        horizon = now + timedelta(days=COMING_UP_DAYS)
        coming = [{**t, "remind_at": (datetime.fromisoformat(t["due_at"]) - lead).isoformat(),
                   "reminding": datetime.fromisoformat(t["due_at"]) - lead <= now}
                  for t in every["items"] if t["task_id"] not in shown
                  and datetime.fromisoformat(t["due_at"]) <= horizon]
        quiet = web.call(api.get, s.key, "crm", "/customers", no_contact_days=no_contact_days,
                         salesperson_id=s.subject if s.role == "salesperson" else None, limit=50)
        return web.render(request, "console.html", overdue=overdue["items"], today=today["items"], coming=coming,
                          day=today["today"], zone=today["time_zone"], quiet=quiet["items"],
                          no_contact_days=no_contact_days)

    @r.get("/console/customers/{customer_id}")
    def customer(request: Request, customer_id: str = Path(**ID_BOUNDS), page: int = Query(1, ge=1, le=10_000)):
        s = me(request)
        profile = web.call(api.get, s.key, "crm", f"/customers/{customer_id}")
        timeline = web.call(api.get, s.key, "crm", f"/customers/{customer_id}/timeline", limit=TIMELINE_PAGE,
                            offset=(page - 1) * TIMELINE_PAGE)
        default_due = (web.ctx.clock.now().astimezone(web.formats(request).tz) + timedelta(days=2)).replace(
            hour=9, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")
        return web.render(request, "customer.html", profile=profile, timeline=timeline, channels=CHANNELS,
                          kinds=TASK_KINDS, default_due=default_due,
                          reminder_hours=f"{lead.total_seconds() / 3600:g}", logged=request.query_params.get("logged"))

    @r.post("/console/customers/{customer_id}/contacts", dependencies=[Depends(check_csrf)])
    def log_contact(request: Request, customer_id: str = Path(**ID_BOUNDS),
                    channel: Literal[CHANNELS] = Form(...), summary: str = Form("", max_length=4000),
                    contact_name: str = Form("", max_length=200)):
        s = me(request)
        web.call(api.post, s.key, "crm", f"/customers/{customer_id}/contacts",
                 {"channel": channel, "summary": summary.strip(), "contact_name": contact_name.strip() or None})
        return RedirectResponse(f"/console/customers/{customer_id}?logged=contact", status_code=303)

    @r.post("/console/customers/{customer_id}/tasks", dependencies=[Depends(check_csrf)])
    def schedule(request: Request, customer_id: str = Path(**ID_BOUNDS), title: str = Form(..., max_length=300),
                 due: str = Form(..., max_length=20), kind: Literal[TASK_KINDS] = Form("custom"),
                 notes: str = Form("", max_length=4000)):
        s = me(request)
        web.call(api.post, s.key, "crm", f"/customers/{customer_id}/tasks",
                 {"title": title.strip(), "due_at": local_to_utc(request, due), "kind": kind, "notes": notes})
        return RedirectResponse(f"/console/customers/{customer_id}?logged=task", status_code=303)

    @r.post("/console/tasks/{task_id}/{action}", dependencies=[Depends(check_csrf)])
    def task_action(request: Request, task_id: str = Path(**ID_BOUNDS), action: str = Path(max_length=20),
                    back: str = Form("/console", max_length=300), due: str = Form("", max_length=20),
                    salesperson_id: str = Form("", max_length=64), note: str = Form("", max_length=4000)):
        s = me(request)
        if action == "complete":
            body = {"note": note}
        elif action == "snooze":
            body = {"due_at": local_to_utc(request, due)}
        elif action == "reassign":
            body = {"salesperson_id": salesperson_id.strip()}
        else:
            raise PageError(404, action)
        web.call(api.post, s.key, "crm", f"/tasks/{task_id}/{action}", body)
        return RedirectResponse(back if back.startswith("/console") else "/console", status_code=303)

    return r
