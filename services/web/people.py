"""Who may sign in to the web pages, and as what.

A person is an email address with one role and one subject: a customer's buyer (role customer,
subject the customer id the services know), a salesperson (subject their CRM id), an operator or
a warehouse clerk (subject their name). Operators keep the list on /ops/people; the first operator
is added with `salesbus person EMAIL operator NAME`. Several buyers of one customer are several
people with the same subject."""
from __future__ import annotations

from typing import Literal, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.types import Email, Language, TimeZoneName
from services.web.i18n import zone


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    name: str = Field(min_length=1, max_length=200)
    role: Literal["customer", "salesperson", "operator", "warehouse"]
    subject: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,63}$")
    language: Language = "en"
    time_zone: TimeZoneName = "UTC"
    active: bool = True

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @field_validator("time_zone")
    @classmethod
    def _known(cls, v: str) -> str:
        if str(zone(v)) != v and v != "UTC":
            raise ValueError(f"unknown IANA time zone {v!r} (e.g. Europe/Warsaw)")
        return v


def person(email: str = typer.Argument(..., help="their email address: sign-in links go there"),
           role: str = typer.Argument(..., help="customer | salesperson | operator | warehouse"),
           subject: str = typer.Argument(..., help="customer id, salesperson id, or the staff member's name"),
           name: Optional[str] = typer.Option(None, help="how pages greet them (default: the subject)"),
           language: str = typer.Option("en", help="en, es, pl, fr, vi or hr"),
           time_zone: str = typer.Option("UTC", help="IANA time zone, e.g. Europe/Zagreb"),
           inactive: bool = typer.Option(False, help="keep them listed but refuse sign-in")):
    """Let a person sign in to the web pages (stored in the web service's database)."""
    from runtime import db
    from runtime.config import Settings
    from runtime.service import load_service
    from runtime.clock import WallClock
    import psycopg
    from psycopg.rows import dict_row
    from services.web import store

    body = PersonIn(email=email, name=name or subject, role=role, subject=subject, language=language,
                    time_zone=time_zone, active=not inactive)
    cfg = Settings()
    url = cfg.database_for("web")
    db.migrate(url, load_service("web").migrations)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = store.upsert_person(conn, **body.model_dump(), now=WallClock().now())
    print(f"{row['email']}: {row['role']} {row['subject']} ({row['language']}, {row['time_zone']})")
