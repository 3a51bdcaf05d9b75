"""Standing orders and the scheduler's time triggers."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import Frozen, Delivery, Language, Payment, StandingLine, UtcDateTime


class Interval(Frozen):
    """Every N days, weeks or months."""
    every: int = Field(ge=1, le=366)
    unit: Literal["days", "weeks", "months"]


class StandingOrderRequested(Event):
    """A customer asked for a standing order at checkout; the scheduler creates it."""
    key_field = "standing_order_id"
    standing_order_id: str
    customer_id: str
    lines: list[StandingLine] = Field(min_length=1)
    delivery: Delivery
    payment: Payment
    language: Language = "en"
    interval: Interval
    start_date: date
    time_zone: str = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = None
    max_occurrences: int | None = Field(default=None, ge=1)
    requested_at: UtcDateTime


class StandingOrderChanged(Event):
    """A standing order was created or changed (paused, resumed, skip, quantities, delivery, cancelled),
    or ended by itself (its last occurrence was due: end date or number of occurrences reached)."""
    key_field = "standing_order_id"
    standing_order_id: str
    customer_id: str
    change: Literal["created", "paused", "resumed", "skipped", "lines_changed", "delivery_changed", "cancelled",
                    "ended"]
    status: Literal["active", "paused", "cancelled", "ended"]
    lines: list[StandingLine]
    delivery: Delivery
    payment: Payment
    language: Language = "en"
    interval: Interval
    start_date: date
    time_zone: str = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = None
    max_occurrences: int | None = Field(default=None, ge=1)
    skip_occurrences: list[int] = Field(default_factory=list, description="occurrence numbers to skip")
    changed_by: str = Field(default="customer", description="customer or salesperson id")
    changed_at: UtcDateTime


class RecurringOrderDue(Event):
    """An occurrence of a standing order is due: orders places it (exactly once per occurrence)."""
    key_field = "standing_order_id"
    standing_order_id: str
    occurrence: int = Field(ge=1)
    due_at: UtcDateTime
    customer_id: str
    lines: list[StandingLine]
    delivery: Delivery
    payment: Payment
    language: Language = "en"


class StandingOrderOccurrenceFailed(Event):
    """An occurrence of a standing order could not be placed (e.g. a product is no longer sold)."""
    key_field = "standing_order_id"
    standing_order_id: str
    occurrence: int
    customer_id: str
    reason: str
    delivery: Delivery
    language: Language = "en"
    failed_at: UtcDateTime


class TimerRequested(Event):
    """A service asks the scheduler to fire a trigger at a time (e.g. a task reminder)."""
    key_field = "timer_id"
    timer_id: str = Field(description="unique; requesting it again replaces the time")
    owner: str = Field(description="service that asked, e.g. crm")
    kind: str
    fire_at: UtcDateTime
    payload: dict[str, Any] = Field(default_factory=dict)


class TimerCancelled(Event):
    """A previously requested timer is no longer needed."""
    key_field = "timer_id"
    timer_id: str
    owner: str


class TimerFired(Event):
    """A requested timer reached its time."""
    key_field = "timer_id"
    timer_id: str
    owner: str
    kind: str
    fire_at: UtcDateTime
    fired_at: UtcDateTime
    payload: dict[str, Any] = Field(default_factory=dict)
