"""Salesperson tasks over HTTP: my tasks for today, new tasks, complete / snooze / reassign / cancel.

A salesperson changes only the tasks assigned to them (reassigning one hands it on); an operator
changes any. Every change is announced as TaskChanged and keeps the reminder timer in step.
"""
from __future__ import annotations

from typing import Annotated, Callable, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from runtime.access import CUSTOMER_CARE
from runtime.auth import Principal, require
from runtime.service import ServiceContext
from runtime.pages import PageParams, page, page_params
from runtime.problems import Forbidden
from services.crm import commands, store, task_store, tasks
from schemas.types import ID_BOUNDS
from services.crm.models import IDENTIFIER, NoteIn, ReassignIn, SnoozeIn, TaskIn
from services.crm.views import MyTasks, TaskOut, task_out

staff = require(*CUSTOMER_CARE)
TaskId = Annotated[str, Path(**ID_BOUNDS, description="the task id")]
CustomerId = Annotated[str, Path(**ID_BOUNDS, description="the customer (organisation) id")]
NO_TASK = {404: {"description": "no such task"}}
CHANGE = {**NO_TASK, 409: {"description": "the task is closed (task-closed); snooze: the time is not in the future "
                                          "(time-conflict); reassign: a salesperson new to the CRM without "
                                          "email and time_zone (unknown-salesperson)"}}


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["tasks"])

    @r.get("/me/tasks", response_model=MyTasks)
    def my_tasks(request: Request,
                 due: Literal["today", "overdue", "all"] = Query(
                     "all", description="today: due on the salesperson's calendar day in their time zone; "
                                        "overdue: past due; all: every open task"),
                 salesperson_id: str | None = Query(None, pattern=IDENTIFIER, description="operators: whose tasks"),
                 params: PageParams = Depends(page_params),
                 principal: Principal = Depends(staff)):
        """A salesperson's open tasks, soonest due first."""
        if salesperson_id and principal.role != "operator":
            raise Forbidden("a salesperson sees their own tasks")
        who = salesperson_id or principal.subject
        now = ctx.clock.now()
        with ctx.pool.connection() as conn:
            person = store.salesperson(conn, who)
            zone = person["time_zone"] if person else "UTC"
            start, end = tasks.day_window(now, zone)
            bounds = {"today": (start, end), "overdue": (None, now), "all": (None, None)}[due]
            total, rows = task_store.open_tasks_of(conn, who, due_from=bounds[0], due_before=bounds[1],
                                                   limit=params.limit, offset=params.offset)
        return {**page(request, [task_out(t, now) for t in rows], params, total), "salesperson_id": who,
                "time_zone": zone, "today": tasks.local_day(now, zone), "due": due}

    @r.post("/customers/{customer_id}/tasks", status_code=201, response_model=TaskOut,
            responses={404: {"description": "no such customer in the CRM"},
                       409: {"description": "the task's salesperson is unknown to the CRM (unknown-salesperson)"}})
    def create_task(customer_id: CustomerId, body: TaskIn, principal: Principal = Depends(staff)) -> TaskOut:
        """A task for the customer; its reminder is emailed the reminder lead time before it is due
        (SALESBUS_CRM_REMINDER_LEAD_HOURS, in this API's description)."""
        with ctx.unit_of_work() as uow:
            return task_out(commands.create_task(uow, principal, ctx.dependencies["policy"], customer_id, body), uow.now())

    @r.get("/tasks/{task_id}", response_model=TaskOut, responses=NO_TASK)
    def get_task(task_id: TaskId, principal: Principal = Depends(staff)) -> TaskOut:
        with ctx.pool.connection() as conn:
            return task_out(commands.task_or_404(conn, task_id), ctx.clock.now())

    @r.post("/tasks/{task_id}/complete", response_model=TaskOut, responses=CHANGE)
    def complete(task_id: TaskId, body: NoteIn | None = None, principal: Principal = Depends(staff)) -> TaskOut:
        return _change(ctx, principal, task_id, lambda uow, task: commands.complete(uow, task, (body or NoteIn()).note))

    @r.post("/tasks/{task_id}/cancel", response_model=TaskOut, responses=CHANGE)
    def cancel(task_id: TaskId, body: NoteIn | None = None, principal: Principal = Depends(staff)) -> TaskOut:
        return _change(ctx, principal, task_id, lambda uow, task: commands.cancel(uow, task, (body or NoteIn()).note))

    @r.post("/tasks/{task_id}/snooze", response_model=TaskOut, responses=CHANGE)
    def snooze(task_id: TaskId, body: SnoozeIn, principal: Principal = Depends(staff)) -> TaskOut:
        return _change(ctx, principal, task_id,
                       lambda uow, task: commands.snooze_to(uow, ctx.dependencies["policy"], task, body.due_at))

    @r.post("/tasks/{task_id}/reassign", response_model=TaskOut, responses=CHANGE)
    def reassign(task_id: TaskId, body: ReassignIn, principal: Principal = Depends(staff)) -> TaskOut:
        return _change(ctx, principal, task_id, lambda uow, task: commands.reassign_to(uow, task, body))

    return r


def _change(ctx: ServiceContext, principal: Principal, task_id: str, act: Callable) -> TaskOut:
    with ctx.unit_of_work() as uow:
        return task_out(act(uow, commands.held_task(uow, principal, task_id)), uow.now())
