"""Request bodies of the CRM's HTTP API, and the shapes its rows are returned in."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from schemas.events.crm import ContactChannel
from schemas.types import Language, UtcDateTime
from services.crm.tasks import is_time_zone

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,63}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _zone(v: str) -> str:
    if not is_time_zone(v):
        raise ValueError(f"unknown IANA time zone {v!r} (e.g. Europe/Zagreb)")
    return v


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_zone)]


class SalespersonIn(Body):
    id: str = Field(pattern=IDENTIFIER, description="the salesperson's id (their API key's subject)")
    email: str = Field(pattern=EMAIL, max_length=254, description="where task reminders are sent")
    time_zone: TimeZone = Field(description="IANA time zone: 'due today' is computed in it")
    language: Language = Field(default="en", description="language of their reminder emails")


class KeyContactIn(Body):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(default="", max_length=100, description="e.g. purchasing manager")
    email: str | None = Field(default=None, pattern=EMAIL, max_length=254)
    phone: str | None = Field(default=None, min_length=3, max_length=40)
    primary: bool = False


class ProfileIn(Body):
    name: str = Field(min_length=1, max_length=200, description="the organisation's name")
    segment: str = Field(min_length=1, max_length=100, description="e.g. hospitality, facilities, retail")
    language: Language = "en"
    time_zone: TimeZone = Field(description="the customer's IANA time zone")
    salesperson: SalespersonIn = Field(description="the owning salesperson")
    contacts: list[KeyContactIn] = Field(default_factory=list, max_length=50, description="key contacts")

    @model_validator(mode="after")
    def _one_primary(self) -> "ProfileIn":
        if sum(c.primary for c in self.contacts) > 1:
            raise ValueError("at most one key contact can be primary")
        return self


class NewProfileIn(ProfileIn):
    customer_id: str = Field(pattern=IDENTIFIER,
                             description="the customer's id as orders, standing orders and payments know it")


class ContactIn(Body):
    channel: ContactChannel
    occurred_at: UtcDateTime | None = Field(default=None, description="default: now")
    summary: str = Field(default="", max_length=4000)
    contact_name: str | None = Field(default=None, max_length=200, description="the customer's contact involved")
    salesperson_id: str | None = Field(default=None, pattern=IDENTIFIER,
                                       description="operators only; a salesperson logs as themselves")


class TaskIn(Body):
    title: str = Field(min_length=1, max_length=300)
    due_at: UtcDateTime
    kind: Literal["reorder_call", "order_follow_up", "custom"] = "custom"
    notes: str = Field(default="", max_length=4000)
    salesperson_id: str | None = Field(default=None, pattern=IDENTIFIER,
                                       description="default: the caller if a salesperson, else the customer's owner")


class SnoozeIn(Body):
    due_at: UtcDateTime


class ReassignIn(Body):
    salesperson_id: str = Field(pattern=IDENTIFIER)
    email: str | None = Field(default=None, pattern=EMAIL, max_length=254,
                              description="needed when the CRM does not know this salesperson yet")
    time_zone: TimeZone | None = None
    language: Language | None = None


class NoteIn(Body):
    note: str = Field(default="", max_length=4000)


def task_out(row: dict, now: datetime) -> dict:
    return {"task_id": row["task_id"], "customer_id": row["customer_id"], "customer_name": row["customer_name"],
            "salesperson_id": row["salesperson_id"], "kind": row["kind"], "title": row["title"],
            "notes": row["notes"], "status": row["status"], "due_at": row["due_at"],
            "overdue": row["status"] == "open" and row["due_at"] < now, "automatic": row["cause_key"] is not None,
            "reminder_id": row["reminder_id"], "created_by": row["created_by"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "closed_at": row["closed_at"]}


def entry_out(row: dict) -> dict:
    return {k: row[k] for k in ("entry_id", "kind", "subtype", "occurred_at", "summary", "contact_name",
                                "salesperson_id", "source", "order_id", "detail")}
