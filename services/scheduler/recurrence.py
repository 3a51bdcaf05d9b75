"""Pure recurrence arithmetic for standing orders (no I/O, no clock reads).

A standing order repeats every ``every`` days/weeks/months from ``start_date``;
occurrence 1 is on the start date and occurrence n is always computed from the
anchor, ``start + (n-1)*interval``, so a clamped month (Jan 31 -> Feb 28) never
drifts the later ones (-> Mar 31).

Each occurrence fires at ``local_time`` on its date in ``time_zone``:
  * ambiguous local time (fall-back): the first instant, i.e. fold=0;
  * nonexistent local time (spring-forward gap): the transition instant itself,
    the first valid instant after the gap (02:30 on a 02:00->03:00 day fires at
    03:00 new time).  PEP 495's fold=0 reading (03:30) was rejected because when
    a whole day is skipped (Pacific/Apia 2011-12-30) it lands on the same instant
    as the next day's occurrence, breaking "strictly increasing".
So every date maps to exactly one UTC instant and instants strictly increase.

Occurrences past ``end_date`` (inclusive), past ``max_occurrences``, or dated
after ``HORIZON`` (near datetime's year-9999 limit) do not exist.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

UNITS = ("days", "weeks", "months")
# A margin below date.max so that any UTC offset still converts without overflow.
HORIZON = date(9999, 12, 29)
# The same margin above date.min: 0001-01-01 08:00 in Pacific/Auckland is before the first UTC
# instant Python can hold (the full OpenAPI fuzz found it as a 500 on POST /standing-orders).
EARLIEST = date(1, 1, 3)


def add_months(d: date, months: int) -> date:
    """``d`` shifted by ``months`` calendar months, clamped to the month's last day."""
    y, m0 = divmod(d.year * 12 + d.month - 1 + months, 12)
    if not 1 <= y <= 9999:
        raise OverflowError("date out of range")
    return date(y, m0 + 1, min(d.day, calendar.monthrange(y, m0 + 1)[1]))


def to_utc(d: date, local_time: time, tz: ZoneInfo) -> datetime:
    """The single UTC instant of wall-clock ``local_time`` on ``d`` in ``tz``
    (gap -> transition instant, ambiguous -> fold=0; see module docstring)."""
    # A caller's time(fold=1) must not override the fold=0 policy for ambiguity.
    naive = datetime.combine(d, local_time.replace(fold=0))
    late = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: earliest if ambiguous
    if late.astimezone(tz).replace(tzinfo=None) == naive:
        return late
    # In a gap fold=1 gives an instant before the transition and fold=0 one after;
    # tzdata transitions sit on whole seconds, so bisect on seconds between them.
    early = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    before = early.astimezone(tz).utcoffset()
    lo, hi = int(early.timestamp()), -int(-late.timestamp() // 1)
    while hi - lo > 1:  # invariant: offset(lo) == before != offset(hi)
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


@dataclass(frozen=True)
class Recurrence:
    """A standing order's schedule.

    start_date: date of occurrence 1.  every >= 1, unit in "days"|"weeks"|"months".
    time_zone: IANA name.  end_date: last allowed date (inclusive) or None.
    max_occurrences: last allowed n or None.  local_time: naive wall-clock time.
    Skipped occurrence numbers are not stored here; helpers take a ``skipped``
    set and never renumber (skipping 3 leaves 4 as 4).
    """

    start_date: date
    every: int
    unit: str
    time_zone: str
    end_date: date | None = None
    max_occurrences: int | None = None
    local_time: time = time(8, 0)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("every must be >= 1")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}")
        if self.max_occurrences is not None and self.max_occurrences < 1:
            raise ValueError("max_occurrences must be >= 1")
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.start_date < EARLIEST:
            raise ValueError(f"start_date must be {EARLIEST} or later")
        if self.local_time.tzinfo is not None:
            raise ValueError("local_time must be naive (it is read in time_zone)")
        ZoneInfo(self.time_zone)  # fail fast on an unknown zone

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)  # ZoneInfo caches instances per key

    def _raw_date(self, n: int) -> date | None:
        """Date of occurrence n ignoring end rules; None beyond HORIZON."""
        k = (n - 1) * self.every
        try:
            if self.unit == "months":
                d = add_months(self.start_date, k)
            else:
                d = self.start_date + timedelta(days=k * (7 if self.unit == "weeks" else 1))
        except OverflowError:
            return None
        return d if d <= HORIZON else None

    def _count_on_or_before(self, d: date) -> int:
        """How many occurrences (ignoring end rules) fall on or before ``d``; O(1)."""
        s = self.start_date
        if d < s:
            return 0
        if self.unit == "months":
            k = ((d.year - s.year) * 12 + d.month - s.month) // self.every
            # Clamping keeps add_months monotone, so at most one step back is needed.
            return k if add_months(s, k * self.every) > d else k + 1
        step = self.every * (7 if self.unit == "weeks" else 1)
        return (d - s).days // step + 1

    @property
    def last_n(self) -> int:
        """The last existing occurrence number (finite: HORIZON bounds open-ended orders)."""
        last = self._count_on_or_before(min(self.end_date or HORIZON, HORIZON))
        return last if self.max_occurrences is None else min(last, self.max_occurrences)

    def occurrence_date(self, n: int) -> date | None:
        """Local date of occurrence n (n >= 1), or None when it is past the end."""
        if n < 1:
            raise ValueError("occurrences are numbered from 1")
        return self._raw_date(n) if n <= self.last_n else None

    def occurrence_on(self, d: date) -> int | None:
        """The number of the occurrence dated ``d`` (local date), or None when none falls on it."""
        n = self._count_on_or_before(d)
        return n if n >= 1 and self.occurrence_date(n) == d else None

    def occurrence_at(self, n: int) -> datetime | None:
        """Aware UTC instant of occurrence n, or None when it is past the end."""
        d = self.occurrence_date(n)
        return None if d is None else to_utc(d, self.local_time, self.tz)

    def first_due_after(self, instant: datetime, after_n: int = 0) -> int | None:
        """Smallest n > after_n with occurrence_at(n) > instant; None if none exists."""
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        if after_n < 0:
            raise ValueError("after_n must be >= 0")
        last = self.last_n
        local = instant.astimezone(self.tz).date()
        # The date-based count is off by at most a step or two from the answer
        # (local time of day, odd offsets), so correct it by walking.
        n = min(max(after_n + 1, self._count_on_or_before(local)), last + 1)
        while n - 1 > after_n and self.occurrence_at(n - 1) > instant:
            n -= 1
        while n <= last and self.occurrence_at(n) <= instant:
            n += 1
        return n if n <= last else None

    def due_between(
        self, after_n: int, until: datetime, limit: int = 1000,
        skipped: frozenset[int] = frozenset(),
    ) -> list[int]:
        """The catch-up list: every n > after_n with occurrence_at(n) <= until, in
        order, skipped ones left out, at most ``limit`` items (the earliest)."""
        stop = self.first_due_after(until, after_n)
        stop = self.last_n + 1 if stop is None else stop
        out: list[int] = []
        n = after_n + 1
        while n < stop and len(out) < limit:  # bounded by limit + len(skipped)
            if n not in skipped:
                out.append(n)
            n += 1
        return out

    def upcoming(
        self, after_n: int, count: int, skipped: frozenset[int] = frozenset()
    ) -> list[tuple[int, datetime]]:
        """The next ``count`` existing, non-skipped occurrences after after_n as
        (n, UTC instant); fewer when the order ends first."""
        out: list[tuple[int, datetime]] = []
        if after_n < 0:
            raise ValueError("after_n must be >= 0")
        n, last = after_n + 1, self.last_n
        while n <= last and len(out) < count:
            if n not in skipped:
                out.append((n, self.occurrence_at(n)))
            n += 1
        return out
