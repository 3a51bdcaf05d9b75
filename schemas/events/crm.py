"""Customer relationship management: the contact log, tasks and their reminders."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import ID_BOUNDS, Email, Id, LanguageTag, Name, TimeZoneName, UtcDateTime, line, text, text_bounds

ContactChannel = Literal["site_visit", "phone_call", "email_in", "email_out", "meeting", "web_visit"]


class ContactLogged(Event):
    """An interaction with a customer happened (visit, call, email, meeting)."""
    key_field = "customer_id"
    entry_id: Id = Field(description="contact log entry id, unique per interaction")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    channel: ContactChannel = Field(
        description="how the interaction happened: site visit, phone call, email in or out, meeting, web visit")
    occurred_at: UtcDateTime
    summary: text(4000) = Field(default="", description="what was said or done")
    contact_name: str | None = Field(default=None, **text_bounds(200),
                                     description="the customer's key contact involved")
    salesperson_id: str | None = Field(
        default=None, **ID_BOUNDS, description="salesperson involved; null when none was (e.g. a web visit)")
    source: line(100, 1) = Field(default="crm", description="crm, website, telephony, mail-gateway, ...")


class TaskChanged(Event):
    """A salesperson task was created, completed, snoozed, reassigned or cancelled."""
    key_field = "customer_id"
    task_id: Id = Field(description="task id, the same across all changes of one task")
    customer_id: Id = Field(description="customer (organisation) id; the Kafka key")
    salesperson_id: Id = Field(description="salesperson the task is assigned to after this change")
    kind: Literal["reorder_call", "order_follow_up", "custom"] = Field(
        description="what the task is for: a reorder call, an order follow-up or a custom task")
    status: Literal["open", "done", "cancelled"] = Field(description="task status after this change")
    due_at: UtcDateTime
    title: text(300, 1) = Field(description="short text shown to the salesperson")
    change: Literal["created", "completed", "snoozed", "reassigned", "cancelled"] = Field(
        description="what this change did")
    changed_at: UtcDateTime


class ReminderDue(Event):
    """A salesperson should be reminded, ahead of time, of an open task."""
    key_field = "task_id"
    task_id: Id = Field(description="the open task this reminder is about; the Kafka key")
    reminder_id: Id = Field(description="unique per (task, due time): a snoozed task gets a new one")
    customer_id: Id = Field(description="customer (organisation) id the task is about")
    customer_name: Name = Field(description="customer's name, for the reminder email")
    salesperson_id: Id = Field(description="salesperson to remind")
    salesperson_email: Email = Field(description="where the reminder is sent")
    title: text(300, 1) = Field(description="the task's title")
    due_at: UtcDateTime
    language: LanguageTag = Field(default="en", description="language of the reminder email")
    time_zone: TimeZoneName = Field(default="UTC",
                                    description="the salesperson's IANA time zone, to show the due time in")
