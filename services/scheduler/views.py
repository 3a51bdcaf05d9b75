"""What the scheduler's API answers: a standing order as the customer sees it (response models,
so the OpenAPI document says exactly what comes back)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas import Delivery, Payment, StandingLine
from schemas.events.scheduling import Interval
from services.scheduler.standing import StandingOrder

Status = Literal["active", "paused", "cancelled", "ended"]


class Occurrence(BaseModel):
    occurrence: int = Field(ge=1, description="its number in the schedule (1 = the start date)")
    due_at: datetime = Field(description="when it is placed (UTC)")
    local_date: date = Field(description="its date in the standing order's time zone")


class PlacedOccurrence(Occurrence):
    emitted_at: datetime = Field(description="when the scheduler asked the orders service to place it")


class StandingOrderView(BaseModel):
    standing_order_id: str = Field(description="so-<32 hex digits>")
    customer_id: str
    status: Status
    lines: list[StandingLine]
    delivery: Delivery
    payment: Payment
    language: str
    interval: Interval
    start_date: date
    time_zone: str
    local_time: str = Field(description="the local time of day occurrences are placed at (HH:MM)")
    end_date: date | None
    max_occurrences: int | None
    skip_occurrences: list[int] = Field(description="occurrence numbers that will not be placed")
    last_occurrence: int = Field(description="the schedule has moved past occurrences up to this number")
    next_occurrence: int | None
    next_due_at: datetime | None
    upcoming: list[Occurrence] = Field(description="the next occurrences that will be placed (up to 6)")
    placed: list[PlacedOccurrence] | None = Field(
        default=None, description="occurrences already placed (single-order answers only; null in lists)")


def _at(n: int, dt: datetime, order: StandingOrder) -> dict:
    return {"occurrence": n, "due_at": dt, "local_date": order.local_today(dt)}


def view(order: StandingOrder, now: datetime, history: list[dict] | None = None) -> StandingOrderView:
    return StandingOrderView(
        standing_order_id=order.standing_order_id, customer_id=order.customer_id, status=order.status,
        lines=list(order.lines), delivery=order.delivery, payment=order.payment, language=order.language,
        interval=Interval(every=order.every, unit=order.unit), start_date=order.start_date,
        time_zone=order.time_zone, local_time=order.local_time.strftime("%H:%M"), end_date=order.end_date,
        max_occurrences=order.max_occurrences, skip_occurrences=list(order.skip_occurrences),
        last_occurrence=order.last_occurrence, next_occurrence=order.next_occurrence,
        next_due_at=order.next_due_at, upcoming=[_at(n, at, order) for n, at in order.upcoming(now)],
        placed=None if history is None else [{**_at(h["occurrence"], h["due_at"], order),
                                              "emitted_at": h["emitted_at"]} for h in history])
