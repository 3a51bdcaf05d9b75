"""What happens to a task, whoever asks (a salesperson over HTTP, or an event): the state change,
TaskChanged for everyone watching, and the reminder timer kept in step with the due time.

Every open task has exactly one live reminder (`tasks.reminder_id`). Closing a task withdraws
it; snoozing withdraws it and schedules a new one under a new id, so a timer that still fires
for the old id is recognised as stale and sends nothing.
"""
from __future__ import annotations

from datetime import datetime

from runtime.uow import UnitOfWork
from schemas import (TaskChanged, TimerCancelled, TimerRequested, deterministic_id, new_event_id)
from services.crm import task_store, tasks
from services.crm.tasks import Policy

OWNER = "crm"
REMINDER_KIND = "task_reminder"


class TaskClosed(Exception):
    """The task is done or cancelled: it can no longer change."""


def open_task(uow: UnitOfWork, policy: Policy, *, customer_id: str, salesperson_id: str, kind: str, title: str,
              due_at: datetime, created_by: str, notes: str = "", cause_key: str | None = None) -> dict | None:
    """The new task, or None when an automatic task for this cause already exists."""
    task_id = tasks.task_id_for_cause(cause_key) if cause_key else new_event_id()
    created = task_store.insert_task(
        uow.conn, task_id=task_id, customer_id=customer_id, salesperson_id=salesperson_id, kind=kind,
        title=title[:300], notes=notes, due_at=due_at, cause_key=cause_key, reminder_id=tasks.reminder_id(task_id, 1),
        created_by=created_by, now=uow.now())
    if not created:
        return None
    task = task_store.task(uow.conn, task_id)
    _schedule_reminder(uow, policy, task)
    _announce(uow, task, "created")
    return task


def complete(uow: UnitOfWork, task: dict, note: str = "") -> dict:
    return _close(uow, task, "done", "completed", note)


def cancel(uow: UnitOfWork, task: dict, reason: str = "") -> dict:
    return _close(uow, task, "cancelled", "cancelled", reason)


def snooze(uow: UnitOfWork, policy: Policy, task: dict, due_at: datetime) -> dict:
    _require_open(task)
    _withdraw_reminder(uow, task)
    revision = task["revision"] + 1
    task_store.reschedule(uow.conn, task["task_id"], due_at, revision, tasks.reminder_id(task["task_id"], revision),
                          uow.now())
    task = task_store.task(uow.conn, task["task_id"])
    _schedule_reminder(uow, policy, task)
    _announce(uow, task, "snoozed")
    return task


def reassign(uow: UnitOfWork, task: dict, salesperson_id: str) -> dict:
    """The reminder stays as it is: it is addressed when it fires, to whoever holds the task then."""
    _require_open(task)
    task_store.assign(uow.conn, task["task_id"], salesperson_id, uow.now())
    task = task_store.task(uow.conn, task["task_id"])
    _announce(uow, task, "reassigned")
    return task


def _close(uow: UnitOfWork, task: dict, status: str, change: str, note: str) -> dict:
    _require_open(task)
    task_store.close_task(uow.conn, task["task_id"], status, note.strip(), uow.now())
    _withdraw_reminder(uow, task)
    task = task_store.task(uow.conn, task["task_id"])
    _announce(uow, task, change)
    return task


def _require_open(task: dict) -> None:
    if task["status"] != "open":
        raise TaskClosed(f"task {task['task_id']} is {task['status']}")


def _schedule_reminder(uow: UnitOfWork, policy: Policy, task: dict) -> None:
    rid = task["reminder_id"]
    fire_at = tasks.reminder_fire_at(task["due_at"], uow.now(), policy)
    task_store.add_reminder(uow.conn, rid, task["task_id"], fire_at)
    uow.emit(TimerRequested(timer_id=rid, owner=OWNER, kind=REMINDER_KIND, fire_at=fire_at,
                            payload={"task_id": task["task_id"], "reminder_id": rid}),
             event_id=deterministic_id("TimerRequested", rid))


def _withdraw_reminder(uow: UnitOfWork, task: dict) -> None:
    rid = task["reminder_id"]
    if task_store.settle_reminder(uow.conn, rid, "withdrawn", uow.now()):
        uow.emit(TimerCancelled(timer_id=rid, owner=OWNER), event_id=deterministic_id("TimerCancelled", rid))


def _announce(uow: UnitOfWork, task: dict, change: str) -> None:
    uow.emit(TaskChanged(task_id=task["task_id"], customer_id=task["customer_id"],
                         salesperson_id=task["salesperson_id"], kind=task["kind"], status=task["status"],
                         due_at=task["due_at"], title=task["title"], change=change, changed_at=uow.now()))
