"""Customer relationship management: the contact log, tasks and their reminders."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import UtcDateTime

ContactChannel = Literal["site_visit", "phone_call", "email_in", "email_out", "meeting", "web_visit"]


class ContactLogged(Event):
    """An interaction with a customer happened (visit, call, email, meeting)."""
    key_field = "customer_id"
    entry_id: str = Field(description="contact log entry id, unique per interaction")
    customer_id: str
    channel: ContactChannel
    occurred_at: UtcDateTime
    summary: str = Field(default="", max_length=4000, description="what was said or done")
    contact_name: str | None = Field(default=None, description="the customer's key contact involved")
    salesperson_id: str | None = None
    source: str = Field(default="crm", description="crm, website, telephony, mail-gateway, ...")


class TaskChanged(Event):
    """A salesperson task was created, completed, snoozed, reassigned or cancelled."""
    key_field = "customer_id"
    task_id: str
    customer_id: str
    salesperson_id: str
    kind: Literal["reorder_call", "order_follow_up", "custom"]
    status: Literal["open", "done", "cancelled"]
    due_at: UtcDateTime
    title: str
    change: Literal["created", "completed", "snoozed", "reassigned", "cancelled"]
    changed_at: UtcDateTime


class ReminderDue(Event):
    """A salesperson should be reminded, ahead of time, of an open task."""
    key_field = "task_id"
    task_id: str
    reminder_id: str = Field(description="unique per (task, due time): a snoozed task gets a new one")
    customer_id: str
    customer_name: str
    salesperson_id: str
    salesperson_email: str
    title: str
    due_at: UtcDateTime
    language: str = "en"
    time_zone: str = Field(default="UTC", description="the salesperson's IANA time zone, to show the due time in")
