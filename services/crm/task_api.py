"""Salesperson tasks over HTTP: my tasks for today, new tasks, complete / snooze / reassign / cancel.

A salesperson changes only the tasks assigned to them (reassigning one hands it on); an operator
changes any. Every change is announced as TaskChanged and keeps the reminder timer in step.
"""
from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, HTTPException, Query

from runtime.auth import Principal, require
from runtime.service import ServiceContext
from services.crm import lifecycle, store, task_store, tasks
from services.crm.models import NoteIn, ReassignIn, SnoozeIn, TaskIn, task_out
from services.crm.tasks import Policy

staff = require("salesperson", "operator")


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["tasks"])

    @r.get("/me/tasks")
    def my_tasks(due: str = Query("all", pattern="^(today|overdue|all)$",
                                  description="today: due on the salesperson's calendar day in their time zone; "
                                              "overdue: past due; all: every open task"),
                 salesperson_id: str | None = Query(None, max_length=64, description="operators: whose tasks"),
                 principal: Principal = Depends(staff)) -> dict:
        if salesperson_id and principal.role != "operator":
            raise HTTPException(403, "a salesperson sees their own tasks")
        who = salesperson_id or principal.subject
        now = ctx.clock.now()
        with ctx.pool.connection() as conn:
            person = store.salesperson(conn, who)
            zone = person["time_zone"] if person else "UTC"
            start, end = tasks.day_window(now, zone)
            bounds = {"today": (start, end), "overdue": (None, now), "all": (None, None)}[due]
            rows = task_store.open_tasks_of(conn, who, due_from=bounds[0], due_before=bounds[1])
        return {"salesperson_id": who, "time_zone": zone, "today": tasks.local_day(now, zone).isoformat(),
                "due": due, "tasks": [task_out(t, now) for t in rows]}

    @r.post("/customers/{customer_id}/tasks", status_code=201)
    def create_task(customer_id: str, body: TaskIn, principal: Principal = Depends(staff)) -> dict:
        with ctx.unit_of_work() as uow:
            customer = store.customer(uow.conn, customer_id)
            if customer is None:
                raise HTTPException(404, f"no customer {customer_id!r} in the CRM")
            owner = body.salesperson_id or (principal.subject if principal.role == "salesperson"
                                            else customer["salesperson_id"])
            if store.salesperson(uow.conn, owner) is None:
                raise HTTPException(422, f"unknown salesperson {owner!r}: give them a customer or reassign with "
                                         "their email and time zone first")
            task = lifecycle.open_task(uow, Policy.from_env(), customer_id=customer_id, salesperson_id=owner,
                                       kind=body.kind, title=body.title, due_at=body.due_at, notes=body.notes,
                                       created_by=principal.subject)
            return task_out(task, uow.now())

    @r.get("/tasks/{task_id}")
    def get_task(task_id: str, principal: Principal = Depends(staff)) -> dict:
        with ctx.pool.connection() as conn:
            task = task_store.task(conn, task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id!r}")
        return task_out(task, ctx.clock.now())

    @r.post("/tasks/{task_id}/complete")
    def complete(task_id: str, body: NoteIn | None = None, principal: Principal = Depends(staff)) -> dict:
        return _change(ctx, principal, task_id, lambda uow, task: lifecycle.complete(uow, task, (body or NoteIn()).note))

    @r.post("/tasks/{task_id}/cancel")
    def cancel(task_id: str, body: NoteIn | None = None, principal: Principal = Depends(staff)) -> dict:
        return _change(ctx, principal, task_id, lambda uow, task: lifecycle.cancel(uow, task, (body or NoteIn()).note))

    @r.post("/tasks/{task_id}/snooze")
    def snooze(task_id: str, body: SnoozeIn, principal: Principal = Depends(staff)) -> dict:
        def act(uow, task):
            if body.due_at <= uow.now():
                raise HTTPException(422, "snooze to a time in the future")
            return lifecycle.snooze(uow, Policy.from_env(), task, body.due_at)
        return _change(ctx, principal, task_id, act)

    @r.post("/tasks/{task_id}/reassign")
    def reassign(task_id: str, body: ReassignIn, principal: Principal = Depends(staff)) -> dict:
        def act(uow, task):
            known = store.salesperson(uow.conn, body.salesperson_id) or {}
            if not known and not (body.email and body.time_zone):
                raise HTTPException(422, f"salesperson {body.salesperson_id!r} is new to the CRM: "
                                         "give their email and time_zone")
            if body.email or body.time_zone or body.language:
                store.upsert_salesperson(uow.conn, salesperson_id=body.salesperson_id,
                                         email=body.email or known["email"],
                                         time_zone=body.time_zone or known["time_zone"],
                                         language=body.language or known.get("language", "en"), now=uow.now())
            return lifecycle.reassign(uow, task, body.salesperson_id)
        return _change(ctx, principal, task_id, act)

    return r


def _change(ctx: ServiceContext, principal: Principal, task_id: str, act: Callable) -> dict:
    with ctx.unit_of_work() as uow:
        task = task_store.task(uow.conn, task_id, lock=True)
        if task is None:
            raise HTTPException(404, f"no task {task_id!r}")
        if principal.role != "operator" and principal.subject != task["salesperson_id"]:
            raise HTTPException(403, "this task is assigned to another salesperson")
        try:
            return task_out(act(uow, task), uow.now())
        except lifecycle.TaskClosed as exc:
            raise HTTPException(409, str(exc)) from exc
