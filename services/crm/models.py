"""Request bodies of the CRM's HTTP API (what it answers is in views.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.crm import ContactChannel
from schemas.types import Email, KnownTimeZone, Language, UtcDateTime, line, text

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,63}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


TimeZone = KnownTimeZone


class SalespersonIn(Body):
    id: str = Field(pattern=IDENTIFIER, description="the salesperson's id (their API key's subject)")
    email: Email = Field(description="where task reminders are sent")
    time_zone: TimeZone = Field(description="IANA time zone: 'due today' is computed in it")
    language: Language = Field(default="en", description="language of their reminder emails")


class KeyContactIn(Body):
    name: text(200, 1)
    role: line(100) = Field(default="", description="e.g. purchasing manager")
    email: Email | None = None
    phone: line(40, 3) | None = None


class ProfileIn(Body):
    name: text(200, 1) = Field(description="the organisation's name")
    segment: line(100, 1) = Field(description="e.g. hospitality, facilities, retail")
    language: Language = "en"
    time_zone: TimeZone = Field(description="the customer's IANA time zone")
    salesperson: SalespersonIn = Field(description="the owning salesperson")
    primary_contact: KeyContactIn | None = Field(default=None, description="the one to call first")
    contacts: list[KeyContactIn] = Field(default_factory=list, max_length=49, description="the other key contacts")

    def key_contacts(self) -> list[dict]:
        """As stored and shown: the primary first, flagged (one primary at most, by the shape)."""
        primary = [{**self.primary_contact.model_dump(), "primary": True}] if self.primary_contact else []
        return primary + [{**c.model_dump(), "primary": False} for c in self.contacts]


class NewProfileIn(ProfileIn):
    customer_id: str = Field(pattern=IDENTIFIER,
                             description="the customer's id as orders, standing orders and payments know it")


class ContactIn(Body):
    channel: ContactChannel
    occurred_at: UtcDateTime | None = Field(default=None, description="default: now")
    summary: text(4000) = ""
    contact_name: text(200) | None = Field(default=None, description="the customer's contact involved")
    salesperson_id: str | None = Field(default=None, pattern=IDENTIFIER,
                                       description="operators only; a salesperson logs as themselves")


class TaskIn(Body):
    title: line(300, 1)
    due_at: UtcDateTime
    kind: Literal["reorder_call", "order_follow_up", "custom"] = "custom"
    notes: text(4000) = ""
    salesperson_id: str | None = Field(default=None, pattern=IDENTIFIER,
                                       description="default: the caller if a salesperson, else the customer's owner")


class SnoozeIn(Body):
    due_at: UtcDateTime


class ReassignIn(Body):
    salesperson_id: str = Field(pattern=IDENTIFIER)
    email: Email | None = Field(default=None, description="needed when the CRM does not know this salesperson yet")
    time_zone: TimeZone | None = None
    language: Language | None = None


class NoteIn(Body):
    note: text(4000) = ""
