"""What HTTP, events and workers share in the CRM: a task's lifecycle (open, complete, cancel,
snooze, reassign, with TaskChanged and the reminder timer kept in step), profiles and the contact
log. Commands raise domain errors (runtime/problems.py); the API lets make_app answer them as
problem+json and the handlers decide what an error means for an event.

Every open task has exactly one live reminder (`tasks.reminder_id`). Closing a task withdraws
it; snoozing withdraws it and schedules a new one under a new id, so a timer that still fires
for the old id is recognised as stale and sends nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from runtime.auth import Principal
from runtime.problems import Conflict, Forbidden, NotFound
from runtime.uow import UnitOfWork
from schemas import (ContactLogged, TaskChanged, TimerCancelled, TimerRequested, deterministic_id, new_event_id)
from services.crm import store, task_store, tasks
from services.crm.models import ContactIn, ProfileIn, ReassignIn, TaskIn
from services.crm.tasks import Policy

OWNER = "crm"
REMINDER_KIND = "task_reminder"


#: an entry a little in the future is a clock difference; more is a mistake in the request
CLOCK_SKEW = timedelta(minutes=5)


class TaskClosed(Conflict):
    """The task is done or cancelled: it can no longer change."""
    slug = "task-closed"


class ProfileExists(Conflict):
    slug = "profile-exists"


class UnknownSalesperson(Conflict):
    """The CRM does not know this salesperson yet (409: a matter of what it holds, not of the request's shape)."""
    slug = "unknown-salesperson"


class NotNow(Conflict):
    """A time the present rules out: a contact that has not happened yet, a snooze into the past
    (409: the request is well formed, the clock decides)."""
    slug = "time-conflict"


# --- profiles and the contact log -------------------------------------------------------------


def customer_or_404(conn, customer_id: str) -> dict:
    row = store.customer(conn, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id!r} in the CRM")
    return row


def save_profile(uow: UnitOfWork, customer_id: str, body: ProfileIn, *, create: bool) -> bool:
    sp = body.salesperson
    store.upsert_salesperson(uow.conn, salesperson_id=sp.id, email=sp.email, time_zone=sp.time_zone,
                             language=sp.language, now=uow.now())
    fields = dict(customer_id=customer_id, name=body.name, segment=body.segment, language=body.language,
                  time_zone=body.time_zone, salesperson_id=sp.id, now=uow.now())
    saved = store.insert_customer(uow.conn, **fields) if create else store.update_customer(uow.conn, **fields)
    if saved:
        store.replace_contacts(uow.conn, customer_id, body.key_contacts())
    return saved


def create_profile(uow: UnitOfWork, customer_id: str, body: ProfileIn) -> dict:
    if not save_profile(uow, customer_id, body, create=True):
        raise ProfileExists(f"customer {customer_id!r} already has a profile; PUT to change it")
    return store.customer(uow.conn, customer_id)


def update_profile(uow: UnitOfWork, who: Principal, customer_id: str, body: ProfileIn) -> dict:
    """Replaces the profile (key contacts included); for its owning salesperson or an operator.
    A profile learned from a first order is reviewed by it."""
    current = customer_or_404(uow.conn, customer_id)
    if who.role != "operator" and who.subject != current["salesperson_id"]:
        raise Forbidden("only the owning salesperson or an operator changes a profile")
    save_profile(uow, customer_id, body, create=False)
    return store.customer(uow.conn, customer_id)


def log_contact(uow: UnitOfWork, who: Principal, customer_id: str, body: ContactIn) -> dict:
    """Records an interaction and announces it as ContactLogged (analysts see every contact)."""
    if who.role == "salesperson" and body.salesperson_id not in (None, who.subject):
        raise Forbidden("a salesperson logs contacts as themselves")
    customer = customer_or_404(uow.conn, customer_id)
    now = uow.now()
    occurred_at = body.occurred_at or now
    if occurred_at > now + CLOCK_SKEW:
        raise NotNow("occurred_at is in the future; log a contact once it has happened")
    salesperson_id = (who.subject if who.role == "salesperson"
                      else body.salesperson_id or customer["salesperson_id"])
    entry_id = new_event_id()
    store.add_entry(uow.conn, entry_id=entry_id, customer_id=customer_id, kind="contact",
                    subtype=body.channel, occurred_at=occurred_at, summary=body.summary,
                    contact_name=body.contact_name, salesperson_id=salesperson_id, source="crm", now=now)
    uow.emit(ContactLogged(entry_id=entry_id, customer_id=customer_id, channel=body.channel,
                           occurred_at=occurred_at, summary=body.summary, contact_name=body.contact_name,
                           salesperson_id=salesperson_id, source="crm"),
             event_id=deterministic_id("ContactLogged", entry_id))
    return store.entry(uow.conn, entry_id)


# --- tasks asked for by people ----------------------------------------------------------------


def create_task(uow: UnitOfWork, who: Principal, policy: Policy, customer_id: str, body: TaskIn) -> dict:
    customer = customer_or_404(uow.conn, customer_id)
    owner = body.salesperson_id or (who.subject if who.role == "salesperson" else customer["salesperson_id"])
    if store.salesperson(uow.conn, owner) is None:
        raise UnknownSalesperson(f"unknown salesperson {owner!r}: give them a customer or reassign with "
                                 "their email and time zone first")
    return open_task(uow, policy, customer_id=customer_id, salesperson_id=owner, kind=body.kind, title=body.title,
                     due_at=body.due_at, notes=body.notes, created_by=who.subject)


def task_or_404(conn, task_id: str, *, lock: bool = False) -> dict:
    task = task_store.task(conn, task_id, lock=lock)
    if task is None:
        raise NotFound(f"no task {task_id!r}")
    return task


def held_task(uow: UnitOfWork, who: Principal, task_id: str) -> dict:
    """The task, locked, if `who` may change it: its salesperson or an operator."""
    task = task_or_404(uow.conn, task_id, lock=True)
    if who.role != "operator" and who.subject != task["salesperson_id"]:
        raise Forbidden("this task is assigned to another salesperson")
    return task


def snooze_to(uow: UnitOfWork, policy: Policy, task: dict, due_at: datetime) -> dict:
    if due_at <= uow.now():
        raise NotNow("snooze to a time in the future")
    return snooze(uow, policy, task, due_at)


def reassign_to(uow: UnitOfWork, task: dict, body: ReassignIn) -> dict:
    """Hand the task on; a salesperson new to the CRM is given with their email and time zone."""
    known = store.salesperson(uow.conn, body.salesperson_id) or {}
    if not known and not (body.email and body.time_zone):
        raise UnknownSalesperson(f"salesperson {body.salesperson_id!r} is new to the CRM: give their email and "
                                 "time_zone")
    if body.email or body.time_zone or body.language:
        store.upsert_salesperson(uow.conn, salesperson_id=body.salesperson_id, email=body.email or known["email"],
                                 time_zone=body.time_zone or known["time_zone"],
                                 language=body.language or known.get("language", "en"), now=uow.now())
    return reassign(uow, task, body.salesperson_id)


# --- a task's lifecycle, whoever asks ---------------------------------------------------------


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
