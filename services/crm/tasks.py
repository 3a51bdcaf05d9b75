"""Pure rules for salesperson tasks: when they fall due, when their reminders fire, what
"today" means for a salesperson, and when a customer is expected to reorder.

No I/O and no clock reads: callers pass `now` and the policy (built once from Settings where the
process is assembled, and injected).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas import deterministic_id

if TYPE_CHECKING:
    from runtime.config import Settings

TASK_KINDS = ("reorder_call", "order_follow_up", "custom")
#: orders closer together than this are one ordering occasion (a buyer splitting a basket in two
#: is not ordering twice as often)
SAME_OCCASION = timedelta(hours=24)
#: below this a predicted cadence is noise, not a habit worth a call
MIN_CADENCE = timedelta(days=1)


@dataclass(frozen=True)
class Policy:
    follow_up_days: float = 3.0          # Settings.crm_follow_up_days
    reminder_lead: timedelta = timedelta(hours=24)   # Settings.crm_reminder_lead_hours
    reorder_lead_days: float = 3.0       # Settings.crm_reorder_lead_days
    min_orders_for_cadence: int = 3
    #: who owns a profile the CRM learns from a first order until a salesperson takes it over:
    #: a sales desk that triages new customers (its follow-up and reorder tasks land there)
    new_customer_salesperson: str = "sales-desk"     # Settings.crm_new_customer_salesperson
    new_customer_salesperson_email: str = "sales@salesbus.example"  # Settings.crm_new_customer_salesperson_email

    @classmethod
    def from_settings(cls, cfg: "Settings") -> "Policy":
        return cls(follow_up_days=cfg.crm_follow_up_days, reminder_lead=timedelta(hours=cfg.crm_reminder_lead_hours),
                   reorder_lead_days=cfg.crm_reorder_lead_days,
                   new_customer_salesperson=cfg.crm_new_customer_salesperson,
                   new_customer_salesperson_email=cfg.crm_new_customer_salesperson_email)


def follow_up_due(shipped_at: datetime, policy: Policy) -> datetime:
    """The goods should have arrived and been unpacked: time to ask how it went."""
    return shipped_at + timedelta(days=policy.follow_up_days)


def reminder_fire_at(due_at: datetime, now: datetime, policy: Policy) -> datetime:
    """`lead` before the task is due; a task created (or snoozed) inside the lead window is
    reminded of at once rather than at an instant that has already passed."""
    return max(due_at - policy.reminder_lead, now)


@dataclass(frozen=True)
class ReorderPrediction:
    based_on_order: str        # the latest order the prediction starts from (the task's cause)
    cadence: timedelta         # median interval between ordering occasions
    next_order_at: datetime
    call_due_at: datetime


def ordering_occasions(orders: Sequence[tuple[str, datetime]]) -> list[tuple[str, datetime]]:
    """(order id, placed at), oldest first, with orders less than a day after the previous
    occasion folded into it (the occasion keeps its latest order as its id and time)."""
    occasions: list[tuple[str, datetime]] = []
    start: datetime | None = None
    for order_id, placed_at in sorted(orders, key=lambda o: (o[1], o[0])):
        if start is not None and placed_at - start < SAME_OCCASION:
            occasions[-1] = (order_id, placed_at)
            continue
        start = placed_at
        occasions.append((order_id, placed_at))
    return occasions


def predict_reorder(orders: Sequence[tuple[str, datetime]], policy: Policy) -> ReorderPrediction | None:
    """The next order is expected one median interval after the latest; the salesperson calls
    `reorder_lead_days` before that. None until there are enough occasions to call it a habit."""
    occasions = ordering_occasions(orders)
    if len(occasions) < policy.min_orders_for_cadence:
        return None
    gaps = [b[1] - a[1] for a, b in zip(occasions, occasions[1:])]
    cadence = statistics.median(gaps)
    if cadence < MIN_CADENCE:
        return None
    last_id, last_at = occasions[-1]
    next_at = last_at + cadence
    return ReorderPrediction(last_id, cadence, next_at, next_at - timedelta(days=policy.reorder_lead_days))


def zone(name: str | None) -> ZoneInfo:
    """An IANA zone; unknown or empty names fall back to UTC (profiles are validated on the way in)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, str]:
    # tzdata's zone.tab: "CC<TAB>coordinates<TAB>Zone"; a country's first line is its main zone
    zones: dict[str, str] = {}
    for row in resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text().splitlines():
        if row and not row.startswith("#"):
            country, _coordinates, name, *_ = row.split("\t")
            zones.setdefault(country, name)
    return zones


def country_time_zone(country: str) -> str:
    """The main IANA zone of an ISO 3166 country (US: America/New_York), UTC when unknown: a
    first guess for a profile learned from an order, which a salesperson then checks."""
    return _country_zones().get(country.upper(), "UTC")


def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def local_day(now: datetime, time_zone: str | None) -> date:
    return now.astimezone(zone(time_zone)).date()


def day_window(now: datetime, time_zone: str | None) -> tuple[datetime, datetime]:
    """[start, end) of the salesperson's current calendar day, as aware instants."""
    tz = zone(time_zone)
    today = now.astimezone(tz).date()
    # in UTC: arithmetic between two datetimes of the same zone ignores a DST change between them
    start = datetime.combine(today, time(0), tz).astimezone(timezone.utc)
    end = datetime.combine(today + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
    return start, end


def is_due_today(due_at: datetime, now: datetime, time_zone: str | None) -> bool:
    return local_day(due_at, time_zone) == local_day(now, time_zone)


def task_id_for_cause(cause_key: str) -> str:
    """Automatic tasks get their id from their cause, so replaying the cause names the same task."""
    return deterministic_id("crm-task", cause_key)


def reminder_id(task_id: str, revision: int) -> str:
    """One per (task, due time): every snooze bumps the revision and so the reminder."""
    return deterministic_id("crm-reminder", task_id, revision)


def follow_up_cause(order_id: str) -> str:
    return f"follow_up:{order_id}"


def reorder_cause(customer_id: str, order_id: str) -> str:
    return f"reorder:{customer_id}:{order_id}"
