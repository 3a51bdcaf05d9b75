"""Standing orders and the scheduler's time triggers."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import Frozen, Delivery, Language, Payment, StandingLine, UtcDateTime


class Interval(Frozen):
    """Every N days, weeks or months."""
    every: int = Field(description="how many units between occurrences, e.g. 2 for every 2 weeks", ge=1, le=366)
    unit: Literal["days", "weeks", "months"] = Field(
        description="days, weeks or months (a month keeps the day of month, clamped to the month's end)")


class _StandingOrderTerms(Event):
    """What a standing order is: shared by the request and every change (not a topic itself)."""
    key_field = "standing_order_id"
    standing_order_id: str = Field(description="standing order id; the Kafka key")
    customer_id: str = Field(description="customer (organisation) id")
    lines: list[StandingLine] = Field(
        description="SKU and quantity each occurrence orders (priced when it is placed)", min_length=1)
    delivery: Delivery = Field(description="where each occurrence is delivered")
    payment: Payment = Field(description="how each occurrence is paid")
    language: Language = Field(default="en", description="customer's language for emails")
    interval: Interval = Field(description="how often it repeats")
    start_date: date = Field(description="date of the first occurrence, in the customer's time zone")
    time_zone: str = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = Field(
        default=None, description="last date an occurrence may fall on (inclusive); null for no end date")
    max_occurrences: int | None = Field(
        description="number of occurrences after which it ends; null for no limit", default=None, ge=1)


class StandingOrderRequested(_StandingOrderTerms):
    """A customer asked for a standing order at checkout; the scheduler creates it."""
    requested_at: UtcDateTime


class StandingOrderChanged(_StandingOrderTerms):
    """A standing order was created or changed (paused, resumed, skip, quantities, delivery, cancelled),
    or ended by itself (its last occurrence was due: end date or number of occurrences reached)."""
    change: Literal["created", "paused", "resumed", "skipped", "lines_changed", "delivery_changed", "cancelled",
                    "ended"] = Field(description="what this change did")
    status: Literal["active", "paused", "cancelled", "ended"] = Field(
        description="state after this change; ended means no occurrence is left")
    skip_occurrences: list[int] = Field(default_factory=list, description="occurrence numbers to skip")
    changed_by: str = Field(default="customer", description="customer or salesperson id")
    changed_at: UtcDateTime


class RecurringOrderDue(Event):
    """An occurrence of a standing order is due: orders places it (exactly once per occurrence)."""
    key_field = "standing_order_id"
    standing_order_id: str = Field(description="standing order id; the Kafka key")
    occurrence: int = Field(description="occurrence number within the standing order (1 is the first)", ge=1)
    due_at: UtcDateTime
    customer_id: str = Field(description="customer (organisation) id")
    lines: list[StandingLine] = Field(description="SKU and quantity to order for this occurrence")
    delivery: Delivery = Field(description="where this occurrence is delivered")
    payment: Payment = Field(description="how this occurrence is paid")
    language: Language = Field(default="en", description="customer's language for emails")


class StandingOrderOccurrenceFailed(Event):
    """An occurrence of a standing order could not be placed (e.g. a product is no longer sold)."""
    key_field = "standing_order_id"
    standing_order_id: str = Field(description="standing order id; the Kafka key")
    occurrence: int = Field(description="occurrence number within the standing order")
    customer_id: str = Field(description="customer (organisation) id")
    reason: str = Field(description="why the occurrence could not be placed, human-readable")
    delivery: Delivery = Field(description="the standing order's delivery details, for the customer's email")
    language: Language = Field(default="en", description="customer's language for emails")
    failed_at: UtcDateTime


class TimerRequested(Event):
    """A service asks the scheduler to fire a trigger at a time (e.g. a task reminder)."""
    key_field = "timer_id"
    timer_id: str = Field(description="unique; requesting it again replaces the time")
    owner: str = Field(description="service that asked, e.g. crm")
    kind: str = Field(description="what the timer is for, meaningful to its owner")
    fire_at: UtcDateTime
    payload: dict[str, Any] = Field(
        description="data handed back in TimerFired, opaque to the scheduler", default_factory=dict)


class TimerCancelled(Event):
    """A previously requested timer is no longer needed."""
    key_field = "timer_id"
    timer_id: str = Field(description="the timer no longer needed; the Kafka key")
    owner: str = Field(description="service that asked for the timer")


class TimerFired(Event):
    """A requested timer reached its time."""
    key_field = "timer_id"
    timer_id: str = Field(description="the requested timer; the Kafka key")
    owner: str = Field(description="service that asked for the timer")
    kind: str = Field(description="as requested")
    fire_at: UtcDateTime
    fired_at: UtcDateTime
    payload: dict[str, Any] = Field(description="as requested", default_factory=dict)
