"""A standing order as the scheduler keeps it, and how each change moves its schedule.

The occurrence sequence never changes (recurrence.py computes occurrence n from the anchor);
a change only moves ``last_occurrence`` (what the schedule has moved past), the skip list and
``next_occurrence``/``next_due_at`` (what the ticker looks at). Pure: no SQL, no clock reads.

Pause/resume policy: occurrences that fall due while an order is paused are not placed later;
resuming continues with the first occurrence still in the future (a customer who paused over
the holidays does not want the missed deliveries all at once). Numbering never shifts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runtime.problems import Conflict, Refused
from schemas import Delivery, Payment, RecurringOrderDue, StandingLine, StandingOrderChanged
from schemas.events.scheduling import Interval
from services.scheduler.recurrence import Recurrence

UPCOMING = 6


class InvalidChange(Conflict):
    """The change does not apply to the order in its current state (e.g. resume a cancelled order)."""


class NotAnOccurrence(Refused):
    """A date on which the standing order has no occurrence."""
    slug = "not-an-occurrence"


class DuplicateSku(Refused, ValueError):
    """Also a ValueError: like every other term that makes no standing order (handlers.py)."""
    slug = "duplicate-sku"


def _once_each(lines) -> None:
    skus = [line.sku for line in lines]
    if len(set(skus)) != len(skus):
        raise DuplicateSku("each SKU may appear only once in a standing order")


@dataclass(frozen=True)
class StandingOrder:
    standing_order_id: str
    customer_id: str
    lines: tuple[StandingLine, ...]
    delivery: Delivery
    payment: Payment
    language: str
    every: int
    unit: str
    start_date: date
    time_zone: str
    local_time: time
    end_date: date | None
    max_occurrences: int | None
    skip_occurrences: tuple[int, ...]
    status: str
    last_occurrence: int
    next_occurrence: int | None
    next_due_at: datetime | None
    version: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "StandingOrder":
        return cls(
            row["standing_order_id"], row["customer_id"],
            tuple(StandingLine.model_validate(x) for x in row["lines"]),
            Delivery.model_validate(row["delivery"]), Payment.model_validate(row["payment"]),
            row["language"], row["every"], row["unit"], row["start_date"], row["time_zone"],
            row["local_time"], row["end_date"], row["max_occurrences"],
            tuple(sorted(row["skip_occurrences"] or ())), row["status"], row["last_occurrence"],
            row["next_occurrence"], row["next_due_at"], row["version"])

    @classmethod
    def new(cls, *, standing_order_id: str, customer_id: str, lines, delivery: Delivery, payment: Payment,
            language: str, interval: Interval, start_date: date, time_zone: str,
            end_date: date | None = None, max_occurrences: int | None = None) -> "StandingOrder":
        """A fresh active order, scheduled for its first occurrence; ValueError if the terms make no schedule."""
        _once_each(lines)
        order = cls(standing_order_id, customer_id, tuple(lines), delivery, payment, language,
                    interval.every, interval.unit, start_date, time_zone, time(8, 0), end_date,
                    max_occurrences, (), "active", 0, None, None, 1)
        try:
            order.recurrence  # validates zone, end date, interval
        except ZoneInfoNotFoundError as exc:
            raise ValueError(f"unknown time zone {time_zone!r}") from exc
        return order.scheduled_after(0)

    @property
    def recurrence(self) -> Recurrence:
        return Recurrence(self.start_date, self.every, self.unit, self.time_zone, self.end_date,
                          self.max_occurrences, self.local_time)

    @property
    def skipped(self) -> frozenset[int]:
        return frozenset(self.skip_occurrences)

    def local_today(self, now: datetime) -> date:
        return now.astimezone(ZoneInfo(self.time_zone)).date()

    # --- moving the schedule -------------------------------------------------------------

    def scheduled_after(self, last: int) -> "StandingOrder":
        """Past ``last``: next is the first existing, non-skipped occurrence; none left -> ended."""
        nxt = self.recurrence.upcoming(last, 1, self.skipped)
        if not nxt:
            status = self.status if self.status == "cancelled" else "ended"
            return replace(self, last_occurrence=last, next_occurrence=None, next_due_at=None, status=status)
        n, at = nxt[0]
        return replace(self, last_occurrence=last, next_occurrence=n, next_due_at=at)

    def due(self, now: datetime, limit: int) -> list[tuple[int, datetime]]:
        """The occurrences due by ``now`` (catch-up included), earliest first, at most ``limit``."""
        rec = self.recurrence
        return [(n, rec.occurrence_at(n))
                for n in rec.due_between(self.last_occurrence, now, limit, self.skipped)]

    def first_future(self, now: datetime) -> int:
        """The schedule position (``last``) from which only occurrences after ``now`` remain."""
        n = self.recurrence.first_due_after(now, self.last_occurrence)
        return self.recurrence.last_n if n is None else n - 1

    def upcoming(self, now: datetime, count: int = UPCOMING) -> list[tuple[int, datetime]]:
        if self.status in ("cancelled", "ended"):
            return []
        last = self.last_occurrence if self.status == "active" else self.first_future(now)
        return self.recurrence.upcoming(last, count, self.skipped)

    # --- the customer's changes (each returns the new state) -----------------------------

    def _must_be_live(self) -> None:
        if self.status in ("cancelled", "ended"):
            raise InvalidChange(f"standing order {self.standing_order_id} is {self.status}")

    def pause(self) -> "StandingOrder":
        self._must_be_live()
        return replace(self, status="paused")

    def resume(self, now: datetime) -> "StandingOrder":
        self._must_be_live()
        return replace(self, status="active").scheduled_after(self.first_future(now))

    def skip_next(self, now: datetime) -> tuple["StandingOrder", int]:
        """Skip the occurrence that would be placed next (for a paused order: the next one after now)."""
        self._must_be_live()
        nxt = self.upcoming(now, 1)
        if not nxt:
            raise InvalidChange("there is no next occurrence to skip")
        return self.skip(nxt[0][0], now), nxt[0][0]

    def occurrence_on(self, day: date) -> int:
        """The occurrence dated ``day`` (local date); NotAnOccurrence when there is none."""
        n = self.recurrence.occurrence_on(day)
        if n is None:
            raise NotAnOccurrence(f"standing order {self.standing_order_id} has no occurrence on {day} "
                                  f"(every {self.every} {self.unit} from {self.start_date})")
        return n

    def skip(self, n: int, now: datetime) -> "StandingOrder":
        """Skip occurrence ``n``, any one not yet placed; skipping it again changes nothing.
        InvalidChange for one already placed and for an order that has ended."""
        self._must_be_live()
        if n in self.skipped:
            return self
        at = self.recurrence.occurrence_at(n)
        if at is None:
            raise NotAnOccurrence(f"standing order {self.standing_order_id} has no occurrence {n}")
        # Active: anything the ticker has not placed yet (even if just due). Paused: what falls
        # due while paused is never placed, so only occurrences after now are left to skip.
        if n <= self.last_occurrence or (self.status == "paused" and at <= now):
            raise InvalidChange(f"occurrence {n} ({self.recurrence.occurrence_date(n)}) is already due or placed")
        skipped = replace(self, skip_occurrences=tuple(sorted({*self.skip_occurrences, n})))
        if self.status == "paused":
            return skipped
        return skipped.scheduled_after(self.last_occurrence)

    def with_lines(self, lines: list[StandingLine]) -> "StandingOrder":
        self._must_be_live()
        _once_each(lines)
        return replace(self, lines=tuple(lines))

    def with_delivery(self, delivery: Delivery) -> "StandingOrder":
        self._must_be_live()
        return replace(self, delivery=delivery)

    def cancel(self) -> "StandingOrder":
        self._must_be_live()
        return replace(self, status="cancelled", next_occurrence=None, next_due_at=None)

    # --- what it tells the bus -------------------------------------------------------------

    def changed(self, change: str, changed_by: str, at: datetime) -> StandingOrderChanged:
        return StandingOrderChanged(
            standing_order_id=self.standing_order_id, customer_id=self.customer_id, change=change,
            status=self.status, lines=list(self.lines), delivery=self.delivery, payment=self.payment,
            language=self.language, interval=Interval(every=self.every, unit=self.unit),
            start_date=self.start_date, time_zone=self.time_zone, end_date=self.end_date,
            max_occurrences=self.max_occurrences, skip_occurrences=list(self.skip_occurrences),
            changed_by=changed_by, changed_at=at)

    def occurrence_due(self, n: int, due_at: datetime) -> RecurringOrderDue:
        return RecurringOrderDue(
            standing_order_id=self.standing_order_id, occurrence=n, due_at=due_at,
            customer_id=self.customer_id, lines=list(self.lines), delivery=self.delivery,
            payment=self.payment, language=self.language)
