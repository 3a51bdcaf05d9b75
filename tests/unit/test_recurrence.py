"""Recurrence arithmetic for standing orders: worked examples plus properties."""
from __future__ import annotations

import calendar
import time as _clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scheduler.recurrence import HORIZON, Recurrence, add_months, to_utc

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Zones with awkward rules: southern-hemisphere DST, 30-minute DST (Lord_Howe),
# midnight transitions (Santiago, historic Sao_Paulo), negative DST (Dublin),
# a skipped calendar day (Apia 2011-12-30), no DST at all (Kolkata, UTC).
ZONES = [
    "Europe/Warsaw", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
    "America/Santiago", "America/Sao_Paulo", "Europe/Dublin", "Pacific/Apia",
    "Asia/Tehran", "Asia/Kolkata", "America/St_Johns", "UTC",
]
zones = st.one_of(st.sampled_from(ZONES), st.timezone_keys())
dates = st.dates(date(1990, 1, 1), date(2060, 12, 31))
# Times near 00:00-03:59 hit transitions far more often than uniform times would.
local_times = st.one_of(
    st.builds(time, st.integers(0, 3), st.sampled_from([0, 15, 30, 45, 59])), st.times()
)


def w(zone: str, *args: int) -> datetime:
    """An aware wall-clock datetime in ``zone``."""
    return datetime(*args, tzinfo=ZoneInfo(zone))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def monthly(start: date, **kw) -> Recurrence:
    return Recurrence(start, 1, "months", "Europe/Warsaw", **kw)


@st.composite
def recurrences(draw, bounded: bool | None = None) -> Recurrence:
    unit = draw(st.sampled_from(["days", "weeks", "months"]))
    every = draw(st.integers(1, {"days": 45, "weeks": 10, "months": 14}[unit]))
    start = draw(dates)
    end = max_occ = None
    if bounded is not False and (bounded or draw(st.booleans())):
        kind = draw(st.sampled_from(["end", "max", "both"]))
        if kind in ("end", "both"):
            end = start + timedelta(days=draw(st.integers(0, 1500)))
        if kind in ("max", "both"):
            max_occ = draw(st.integers(1, 60))
    return Recurrence(start, every, unit, draw(zones), end, max_occ, draw(local_times))


def exists(naive: datetime, tz: ZoneInfo) -> bool:
    """Does this wall-clock time actually occur in ``tz``?"""
    return any(
        naive.replace(tzinfo=tz, fold=f).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        == naive
        for f in (0, 1)
    )


def reference_date(r: Recurrence, n: int) -> date:
    """Occurrence n's date by a deliberately different (naive-loop-free) route."""
    k = (n - 1) * r.every
    if r.unit != "months":
        return r.start_date + timedelta(days=k * (7 if r.unit == "weeks" else 1))
    total = r.start_date.month - 1 + k
    y, m = r.start_date.year + total // 12, total % 12 + 1
    return date(y, m, min(r.start_date.day, calendar.monthrange(y, m)[1]))


def brute_instants(r: Recurrence, cap: int = 2000) -> list[datetime]:
    out = []
    for n in range(1, cap + 1):
        at = r.occurrence_at(n)
        if at is None:
            break
        out.append(at)
    return out


# --- worked examples -------------------------------------------------------

def test_month_end_clamps_and_returns_to_anchor_in_leap_year():
    r = monthly(date(2024, 1, 31))
    got = [r.occurrence_date(n) for n in range(1, 7)]
    assert got == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31),
                   date(2024, 4, 30), date(2024, 5, 31), date(2024, 6, 30)]


def test_month_end_clamps_in_common_year():
    r = monthly(date(2023, 1, 31))
    assert r.occurrence_date(2) == date(2023, 2, 28)
    assert r.occurrence_date(3) == date(2023, 3, 31)
    assert r.occurrence_date(13) == date(2024, 1, 31)
    assert r.occurrence_date(14) == date(2024, 2, 29)


def test_add_months():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    with pytest.raises(OverflowError):
        add_months(date(9999, 12, 1), 1)


def test_every_two_months_gives_six_in_a_year():
    r = Recurrence(date(2026, 1, 15), 2, "months", "Europe/Warsaw")
    due = r.due_between(0, w("Europe/Warsaw", 2026, 12, 31, 23, 59))
    assert due == [1, 2, 3, 4, 5, 6]
    assert [r.occurrence_date(n).month for n in due] == [1, 3, 5, 7, 9, 11]
    assert r.occurrence_at(1) == utc(2026, 1, 15, 7)  # 08:00 CET
    assert r.occurrence_at(3) == utc(2026, 5, 15, 6)  # 08:00 CEST
    assert r.first_due_after(w("Europe/Warsaw", 2026, 12, 31, 23, 59)) == 7


def test_warsaw_dst_keeps_eight_oclock_local():
    r = Recurrence(date(2026, 3, 28), 1, "days", "Europe/Warsaw")
    assert r.occurrence_at(1) == utc(2026, 3, 28, 7)  # CET, +01:00
    assert r.occurrence_at(2) == utc(2026, 3, 29, 6)  # CEST, +02:00
    r = Recurrence(date(2026, 10, 24), 1, "days", "Europe/Warsaw")
    assert r.occurrence_at(1) == utc(2026, 10, 24, 6)
    assert r.occurrence_at(2) == utc(2026, 10, 25, 7)
    assert r.occurrence_at(2) - r.occurrence_at(1) == timedelta(hours=25)


def test_warsaw_gap_uses_transition_instant():
    # 02:30 does not exist on 2026-03-29; clocks jump 02:00 CET -> 03:00 CEST at 01:00Z.
    r = Recurrence(date(2026, 3, 28), 1, "days", "Europe/Warsaw", local_time=time(2, 30))
    assert r.occurrence_at(1) == utc(2026, 3, 28, 1, 30)
    assert r.occurrence_at(2) == utc(2026, 3, 29, 1, 0)
    assert r.occurrence_at(2).astimezone(ZoneInfo("Europe/Warsaw")).time() == time(3, 0)
    assert r.occurrence_at(3) == utc(2026, 3, 30, 0, 30)  # back to 02:30 CEST


def test_warsaw_ambiguous_uses_first_instant():
    r = Recurrence(date(2026, 10, 24), 1, "days", "Europe/Warsaw", local_time=time(2, 30))
    assert r.occurrence_at(2) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not CET
    assert r.first_due_after(utc(2026, 10, 25, 0, 30)) == 3  # no second firing at 01:30Z


def test_new_york_dst():
    tz = "America/New_York"
    r = Recurrence(date(2026, 3, 7), 1, "days", tz)
    assert [r.occurrence_at(n) for n in (1, 2)] == [utc(2026, 3, 7, 13), utc(2026, 3, 8, 12)]
    gap = Recurrence(date(2026, 3, 8), 1, "weeks", tz, local_time=time(2, 30))
    assert gap.occurrence_at(1) == utc(2026, 3, 8, 7)  # 03:00 EDT
    assert gap.occurrence_at(2) == utc(2026, 3, 15, 6, 30)  # 02:30 EDT
    amb = Recurrence(date(2026, 11, 1), 1, "days", tz, local_time=time(1, 30))
    assert amb.occurrence_at(1) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT (fold=0)
    assert amb.occurrence_at(2) == utc(2026, 11, 2, 6, 30)  # 01:30 EST


def test_skipped_calendar_day_stays_strictly_increasing():
    # Samoa skipped 2011-12-30 entirely; that occurrence fires at the transition.
    r = Recurrence(date(2011, 12, 29), 1, "days", "Pacific/Apia")
    assert [r.occurrence_at(n) for n in (1, 2, 3)] == [
        utc(2011, 12, 29, 18), utc(2011, 12, 30, 10), utc(2011, 12, 30, 18)]


def test_end_date_and_max_occurrences():
    r = Recurrence(date(2026, 1, 1), 1, "weeks", "UTC", end_date=date(2026, 1, 29))
    assert r.occurrence_date(5) == date(2026, 1, 29)  # end date is inclusive
    assert r.occurrence_date(6) is None and r.occurrence_at(6) is None
    assert r.last_n == 5
    r = Recurrence(date(2026, 1, 1), 1, "days", "UTC", max_occurrences=3)
    assert r.occurrence_date(3) == date(2026, 1, 3)
    assert r.occurrence_date(4) is None
    assert r.due_between(0, utc(2030, 1, 1)) == [1, 2, 3]
    assert r.first_due_after(utc(2026, 1, 3, 8)) is None
    assert r.upcoming(1, 10) == [(2, utc(2026, 1, 2, 8)), (3, utc(2026, 1, 3, 8))]


def test_skips_do_not_renumber():
    r = Recurrence(date(2026, 1, 1), 1, "months", "UTC")
    up = r.upcoming(0, 3, skipped=frozenset({2}))
    assert up == [(1, utc(2026, 1, 1, 8)), (3, utc(2026, 3, 1, 8)), (4, utc(2026, 4, 1, 8))]
    assert r.due_between(0, utc(2026, 4, 1, 8), skipped=frozenset({1, 3})) == [2, 4]


def test_huge_gap_is_bounded_and_fast():
    r = Recurrence(date(2000, 1, 1), 1, "days", "Europe/Warsaw")
    t0 = _clock.perf_counter()
    due = r.due_between(0, utc(9000, 1, 1))
    n = r.first_due_after(utc(2500, 6, 1), after_n=10)
    tail = r.due_between(r.last_n - 3, utc(9999, 12, 31))
    assert _clock.perf_counter() - t0 < 0.5
    assert due == list(range(1, 1001))
    assert r.due_between(5, utc(9000, 1, 1), limit=3) == [6, 7, 8]
    assert r.occurrence_date(n) == date(2500, 6, 1)  # 08:00 local is after 00:00Z
    assert r.occurrence_at(n - 1) <= utc(2500, 6, 1) < r.occurrence_at(n)
    assert r.occurrence_date(r.last_n) == HORIZON and r.occurrence_date(r.last_n + 1) is None
    assert tail == [r.last_n - 2, r.last_n - 1, r.last_n]


def test_validation():
    with pytest.raises(ValueError):
        Recurrence(date(2026, 1, 1), 0, "days", "UTC")
    with pytest.raises(ValueError):
        Recurrence(date(2026, 1, 1), 1, "years", "UTC")
    with pytest.raises(ValueError):
        Recurrence(date(2026, 1, 1), 1, "days", "UTC", max_occurrences=0)
    with pytest.raises(ValueError):
        Recurrence(date(2026, 1, 2), 1, "days", "UTC", end_date=date(2026, 1, 1))
    with pytest.raises(Exception):
        Recurrence(date(2026, 1, 1), 1, "days", "Mars/Olympus_Mons")
    r = Recurrence(date(2026, 1, 1), 1, "days", "UTC")
    with pytest.raises(ValueError):
        r.occurrence_date(0)
    with pytest.raises(ValueError):
        r.first_due_after(datetime(2026, 1, 1))  # naive


# --- properties --------------------------------------------------------------

@PROPS
@given(recurrences())
def test_dates_match_anchor_arithmetic(r):
    """Occurrence n = start + (n-1)*interval from the anchor, until the end rules cut in."""
    for n in range(1, 40):
        expected = reference_date(r, n)
        past_end = (r.max_occurrences is not None and n > r.max_occurrences) or (
            r.end_date is not None and expected > r.end_date)
        assert r.occurrence_date(n) == (None if past_end else expected)
        assert (r.occurrence_at(n) is None) == past_end


@PROPS
@given(dates, st.integers(1, 14), st.integers(1, 60))
def test_months_clamp_to_anchor_day(start, every, n):
    r = Recurrence(start, every, "months", "UTC")
    d = r.occurrence_date(n)
    assert (d.year * 12 + d.month) - (start.year * 12 + start.month) == (n - 1) * every
    assert d.day == min(start.day, calendar.monthrange(d.year, d.month)[1])


@PROPS
@given(dates, st.integers(1, 10), st.integers(1, 100), zones)
def test_weeks_are_exactly_seven_times_every_days_apart(start, every, n, zone):
    r = Recurrence(start, every, "weeks", zone)
    assert (r.occurrence_date(n + 1) - r.occurrence_date(n)).days == 7 * every
    assert r.occurrence_date(n).weekday() == start.weekday()


@PROPS
@given(recurrences(bounded=False))
def test_instants_strictly_increase_and_keep_local_time(r):
    tz = ZoneInfo(r.time_zone)
    prev = None
    for n in range(1, 40):
        at = r.occurrence_at(n)
        assert at.utcoffset() == timedelta(0)
        if prev is not None:
            assert at > prev
        prev = at
        naive = datetime.combine(r.occurrence_date(n), r.local_time)
        wall = at.astimezone(tz).replace(tzinfo=None)
        if exists(naive, tz):
            assert wall == naive
            # ambiguous wall times resolve to the first (earliest) instant
            assert at == min(naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
        else:
            # gap: the first valid instant after it, i.e. the transition itself
            assert wall > naive
            assert (at - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None) < naive


@PROPS
@given(st.sampled_from(ZONES), st.integers(1995, 2045), st.sampled_from([3, 4, 9, 10, 11]),
       local_times)
def test_daily_around_transitions_never_double_or_skip(zone, year, month, lt):
    """A daily order through a DST month fires once per local date, in order."""
    r = Recurrence(date(year, month, 1), 1, "days", zone, local_time=lt)
    instants = [r.occurrence_at(n) for n in range(1, 45)]
    assert all(a < b for a, b in zip(instants, instants[1:]))
    assert all(timedelta(hours=0) < b - a < timedelta(hours=48)
               for a, b in zip(instants, instants[1:]))


@PROPS
@given(recurrences(bounded=True), st.integers(0, 30), st.integers(-400, 4000),
       st.integers(0, 1439))
def test_due_between_and_first_due_after_match_brute_force(r, after_n, day_offset, minute):
    until = datetime.combine(r.start_date, time(), UTC) + timedelta(days=day_offset,
                                                                   minutes=minute)
    instants = brute_instants(r)
    assert len(instants) == r.last_n  # bounded strategy: we enumerated them all
    expected = [n for n, at in enumerate(instants, 1) if n > after_n and at <= until]
    assert r.due_between(after_n, until, limit=10_000) == expected
    assert r.due_between(after_n, until, limit=3) == expected[:3]
    later = [n for n, at in enumerate(instants, 1) if n > after_n and at > until]
    assert r.first_due_after(until, after_n) == (later[0] if later else None)
    # an occurrence is due at its own instant, so the next one is the first after it
    if expected:
        n = expected[-1]
        assert r.first_due_after(instants[n - 1], after_n) == (
            n + 1 if n < len(instants) else None)


@PROPS
@given(recurrences(), st.integers(0, 30), st.integers(0, 12),
       st.frozensets(st.integers(1, 50), max_size=10))
def test_upcoming_respects_skips_and_end(r, after_n, count, skipped):
    up = r.upcoming(after_n, count, skipped)
    existing = [n for n in range(after_n + 1, after_n + count + len(skipped) + 1)
                if r.occurrence_at(n) is not None and n not in skipped]
    assert [n for n, _ in up] == existing[:count]
    assert all(at == r.occurrence_at(n) for n, at in up)
    assert len(up) == count or r.occurrence_at(after_n + count + len(skipped)) is None
    due = r.due_between(after_n, utc(9999, 12, 30), limit=count, skipped=skipped)
    assert due == [n for n, _ in up]


def test_fold_on_local_time_is_ignored():
    # Found by hypothesis: time(1, 0, fold=1) must still mean the first 01:00.
    r = Recurrence(date(2009, 11, 1), 1, "days", "America/New_York", local_time=time(1, 0, fold=1))
    assert r.occurrence_at(1) == utc(2009, 11, 1, 5)


def test_a_start_on_the_first_days_python_holds_is_refused_not_an_overflow():
    # Regression: POST /standing-orders with start_date 0001-01-01 in "NZ" answered 500 (08:00 local
    # is before datetime.min in UTC; the OverflowError escaped the ValueError the API maps to 409).
    with pytest.raises(ValueError, match="start_date"):
        Recurrence(date(1, 1, 1), 1, "weeks", "NZ", date(2000, 1, 1))
    assert Recurrence(date(1, 1, 3), 1, "weeks", "NZ").occurrence_at(1).year == 1
