"""How a standing order's schedule moves when the customer changes it (pure, no database)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from schemas import Delivery, Payment, StandingLine
from schemas.events.scheduling import Interval
from services.scheduler.standing import InvalidChange, StandingOrder

DELIVERY = Delivery(recipient="Stores", address_lines=["1 Quay"], city="Split", postal_code="21000", country="HR",
                    phone="+385 21 000", email="buyer@example.hr")


def weekly(**kw) -> StandingOrder:
    return StandingOrder.new(standing_order_id="so-1", customer_id="c-1", lines=[StandingLine(sku="BULB-1", quantity=5)],
                             delivery=DELIVERY, payment=Payment(mode="account"), language="en",
                             interval=Interval(every=1, unit="weeks"), start_date=date(2026, 1, 5), time_zone="UTC",
                             **kw)


def at(d: int, h: int = 12) -> datetime:
    return datetime(2026, 1, d, h, tzinfo=UTC)


def test_new_order_is_due_at_its_first_occurrence():
    o = weekly()
    assert (o.status, o.next_occurrence, o.next_due_at) == ("active", 1, at(5, 8))


def test_occurrences_due_while_paused_are_dropped_on_resume():
    o = weekly().pause()
    assert o.status == "paused"
    resumed = o.resume(at(13))  # occurrences 1 (Jan 5) and 2 (Jan 12) fell in the pause
    assert (resumed.status, resumed.last_occurrence, resumed.next_occurrence) == ("active", 2, 3)
    assert resumed.next_due_at == at(19, 8)


def test_skip_next_passes_over_without_renumbering():
    o, skipped = weekly().skip_next(at(1))
    assert skipped == 1 and o.skip_occurrences == (1,) and o.next_occurrence == 2
    o, skipped = o.skip_next(at(1))
    assert skipped == 2 and o.next_occurrence == 3
    assert [n for n, _ in o.due(at(20), 10)] == [3]


def test_skip_while_paused_applies_to_the_first_occurrence_after_resuming():
    o, skipped = weekly().pause().skip_next(at(6))
    assert skipped == 2  # occurrence 1 is already past: resuming now would start at 2
    assert o.resume(at(6)).next_occurrence == 3


def test_skipping_the_last_occurrence_ends_the_order():
    o, _ = weekly(max_occurrences=1).skip_next(at(1))
    assert (o.status, o.next_due_at) == ("ended", None)


def test_catch_up_is_bounded_and_ordered():
    o = weekly()
    assert [n for n, _ in o.due(at(5, 8) + timedelta(weeks=20), 5)] == [1, 2, 3, 4, 5]
    assert o.scheduled_after(5).next_occurrence == 6


def test_cancelled_orders_accept_no_change():
    o = weekly().cancel()
    assert o.upcoming(at(1)) == []
    for change in (lambda: o.resume(at(1)), o.pause, lambda: o.skip_next(at(1)), o.cancel):
        with pytest.raises(InvalidChange):
            change()


def test_terms_that_make_no_schedule_are_refused():
    with pytest.raises(ValueError):
        weekly(end_date=date(2025, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        StandingOrder.new(standing_order_id="so-2", customer_id="c-1", lines=[StandingLine(sku="BULB-1", quantity=1)],
                          delivery=DELIVERY, payment=Payment(mode="account"), language="en",
                          interval=Interval(every=1, unit="days"), start_date=date(2026, 1, 5),
                          time_zone="Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="SKU"):
        weekly().with_lines([StandingLine(sku="BULB-1", quantity=1), StandingLine(sku="BULB-1", quantity=2)])


# --- skipping any occurrence by its date (issue 16: only the next one could be skipped) ---------

def test_any_later_occurrence_is_skipped_by_its_date_without_moving_the_next():
    from services.scheduler.standing import NotAnOccurrence
    o = weekly()
    third = o.skip(o.occurrence_on(date(2026, 1, 19)), at(1))
    assert third.skip_occurrences == (3,) and third.next_occurrence == 1
    assert [n for n, _ in third.due(at(27), 10)] == [1, 2, 4]
    assert third.skip(3, at(1)) is third, "skipping again must change nothing"
    with pytest.raises(NotAnOccurrence):
        o.occurrence_on(date(2026, 1, 20))  # a Tuesday: the order runs on Mondays
    with pytest.raises(NotAnOccurrence):
        weekly(max_occurrences=2).occurrence_on(date(2026, 1, 19))  # past its last occurrence


def test_skipping_the_next_by_date_moves_the_schedule_and_a_placed_one_is_refused():
    o = weekly().skip(1, at(1))
    assert o.next_occurrence == 2
    placed = weekly().scheduled_after(2)  # the ticker has placed 1 and 2
    with pytest.raises(InvalidChange):
        placed.skip(2, at(13))
    paused = weekly().pause()
    with pytest.raises(InvalidChange):
        paused.skip(1, at(6))  # fell due while paused: it will never be placed anyway
    assert paused.skip(2, at(6)).skip_occurrences == (2,)
    with pytest.raises(InvalidChange):
        weekly().cancel().skip(3, at(1))
