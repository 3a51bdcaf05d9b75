"""Standing orders and the scheduler's time triggers."""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator

from schemas.envelope import Event
from schemas.types import (COUNT_BOUNDS, Count, Day, Delivery, Frozen, Id, Language, Payload, Payment, StandingLine,
                           TimeZoneName, UtcDateTime, date_text, integral, line, text, whole)


class Interval(Frozen):
    """Every N days, weeks or months."""
    every: whole(1, 366) = Field(description="how many units between occurrences, e.g. 2 for every 2 weeks")
    unit: Literal["days", "weeks", "months"] = Field(
        description="days, weeks or months (a month keeps the day of month, clamped to the month's end)")


class _StandingOrderTerms(Event):
    """What a standing order is: shared by the request and every change (not a topic itself)."""
    key_field = "standing_order_id"
    standing_order_id: Id = Field(description="standing order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    lines: list[StandingLine] = Field(
        description="SKU and quantity each occurrence orders (priced when it is placed)", min_length=1, max_length=200)
    delivery: Delivery = Field(description="where each occurrence is delivered")
    payment: Payment = Field(description="how each occurrence is paid")
    language: Language = Field(default="en", description="customer's language for emails")
    interval: Interval = Field(description="how often it repeats")
    start_date: Day = Field(description="date of the first occurrence, in the customer's time zone")
    time_zone: TimeZoneName = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = Field(
        default=None, description="last date an occurrence may fall on (inclusive); null for no end date")
    max_occurrences: int | None = Field(
        description="number of occurrences after which it ends; null for no limit", default=None, **COUNT_BOUNDS)

    _end_date_text = field_validator("end_date", mode="before")(date_text)
    _integral = field_validator("max_occurrences", mode="before")(integral)


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
    skip_occurrences: list[Count] = Field(default_factory=list, max_length=10_000,
                                      description="occurrence numbers to skip")
    changed_by: Id = Field(default="customer", description="customer or salesperson id")
    changed_at: UtcDateTime


class RecurringOrderDue(Event):
    """An occurrence of a standing order is due: orders places it (exactly once per occurrence)."""
    key_field = "standing_order_id"
    standing_order_id: Id = Field(description="standing order id; the Kafka key")
    occurrence: Count = Field(description="occurrence number within the standing order (1 is the first)")
    due_at: UtcDateTime
    customer_id: Id = Field(description="customer (organisation) id")
    lines: list[StandingLine] = Field(min_length=1, max_length=200,
                                  description="SKU and quantity to order for this occurrence")
    delivery: Delivery = Field(description="where this occurrence is delivered")
    payment: Payment = Field(description="how this occurrence is paid")
    language: Language = Field(default="en", description="customer's language for emails")


class StandingOrderOccurrenceFailed(Event):
    """An occurrence of a standing order could not be placed (e.g. a product is no longer sold)."""
    key_field = "standing_order_id"
    standing_order_id: Id = Field(description="standing order id; the Kafka key")
    occurrence: Count = Field(description="occurrence number within the standing order")
    customer_id: Id = Field(description="customer (organisation) id")
    reason: text(2000) = Field(description="why the occurrence could not be placed, human-readable")
    delivery: Delivery = Field(description="the standing order's delivery details, for the customer's email")
    language: Language = Field(default="en", description="customer's language for emails")
    failed_at: UtcDateTime


class TimerRequested(Event):
    """A service asks the scheduler to fire a trigger at a time (e.g. a task reminder)."""
    key_field = "timer_id"
    timer_id: Id = Field(description="unique; requesting it again replaces the time")
    owner: line(100, 1) = Field(description="service that asked, e.g. crm")
    kind: line(100, 1) = Field(description="what the timer is for, meaningful to its owner")
    fire_at: UtcDateTime
    payload: Payload = Field(
        description="data handed back in TimerFired, opaque to the scheduler", default_factory=dict)


class TimerCancelled(Event):
    """A previously requested timer is no longer needed."""
    key_field = "timer_id"
    timer_id: Id = Field(description="the timer no longer needed; the Kafka key")
    owner: line(100, 1) = Field(description="service that asked for the timer")


class TimerFired(Event):
    """A requested timer reached its time."""
    key_field = "timer_id"
    timer_id: Id = Field(description="the requested timer; the Kafka key")
    owner: line(100, 1) = Field(description="service that asked for the timer")
    kind: line(100, 1) = Field(description="as requested")
    fire_at: UtcDateTime
    fired_at: UtcDateTime
    payload: Payload = Field(description="as requested", default_factory=dict)
