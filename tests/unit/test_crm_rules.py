"""The CRM's pure rules: follow-up and reminder times, ordering cadence, the salesperson's "today"."""
from datetime import datetime, timedelta, timezone

import pytest

from runtime.config import Settings
from services.crm import tasks
from services.crm.tasks import Policy

UTC = timezone.utc


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def env_settings(monkeypatch, env: dict[str, str]) -> Settings:
    """Settings as a process with exactly these SALESBUS_CRM_* variables reads them."""
    for name in ("SALESBUS_CRM_FOLLOW_UP_DAYS", "SALESBUS_CRM_REMINDER_LEAD_HOURS", "SALESBUS_CRM_REORDER_LEAD_DAYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_policy_defaults_and_environment(monkeypatch):
    assert Policy.from_settings(env_settings(monkeypatch, {})) == Policy(follow_up_days=3.0, reminder_lead=timedelta(hours=24), reorder_lead_days=3.0)
    p = Policy.from_settings(env_settings(monkeypatch, {"SALESBUS_CRM_FOLLOW_UP_DAYS": "5", "SALESBUS_CRM_REMINDER_LEAD_HOURS": "2.5",
                                                        "SALESBUS_CRM_REORDER_LEAD_DAYS": "7"}))
    assert (p.follow_up_days, p.reminder_lead, p.reorder_lead_days) == (5.0, timedelta(hours=2, minutes=30), 7.0)
    with pytest.raises(ValueError, match="must not be negative"):
        Policy.from_settings(env_settings(monkeypatch, {"SALESBUS_CRM_REMINDER_LEAD_HOURS": "-1"}))


def test_follow_up_is_due_the_configured_days_after_shipping():
    assert tasks.follow_up_due(at(2026, 3, 1, 9), Policy(follow_up_days=3)) == at(2026, 3, 4, 9)


def test_reminder_fires_the_lead_time_before_due_but_never_in_the_past():
    policy = Policy(reminder_lead=timedelta(hours=24))
    now = at(2026, 3, 1, 12)
    assert tasks.reminder_fire_at(at(2026, 3, 5, 9), now, policy) == at(2026, 3, 4, 9)
    # due within the lead window: remind at once rather than at an instant already gone
    assert tasks.reminder_fire_at(at(2026, 3, 1, 20), now, policy) == now


def test_no_reorder_prediction_before_three_ordering_occasions():
    orders = [("o1", at(2026, 1, 1)), ("o2", at(2026, 1, 15))]
    assert tasks.predict_reorder(orders, Policy()) is None


def test_reorder_call_is_due_a_few_days_before_the_median_interval_after_the_last_order():
    orders = [("o3", at(2026, 2, 10)), ("o1", at(2026, 1, 1)), ("o2", at(2026, 1, 15)), ("o4", at(2026, 3, 12))]
    p = tasks.predict_reorder(orders, Policy(reorder_lead_days=3))
    # intervals 14, 26, 30 days: the median (26) resists the one odd gap
    assert p.based_on_order == "o4" and p.cadence == timedelta(days=26)
    assert p.next_order_at == at(2026, 4, 7) and p.call_due_at == at(2026, 4, 4)


def test_orders_on_the_same_day_are_one_ordering_occasion():
    orders = [("a", at(2026, 1, 1, 9)), ("b", at(2026, 1, 1, 15)), ("c", at(2026, 1, 31)), ("d", at(2026, 3, 2))]
    occasions = tasks.ordering_occasions(orders)
    assert [o for o, _ in occasions] == ["b", "c", "d"]
    assert tasks.predict_reorder(orders, Policy()).cadence == timedelta(days=30, hours=-7.5)
    # three orders within hours are not a habit of ordering hourly
    assert tasks.predict_reorder([("x", at(2026, 1, 1, 1)), ("y", at(2026, 1, 1, 2)), ("z", at(2026, 1, 1, 3))],
                                 Policy()) is None


def test_due_today_is_the_salespersons_calendar_day_not_utcs():
    due = at(2026, 3, 2, 23, 30)            # 08:30 on 3 March in Tokyo
    now = at(2026, 3, 3, 1, 0)              # 10:00 on 3 March in Tokyo
    assert tasks.is_due_today(due, now, "Asia/Tokyo")
    assert not tasks.is_due_today(due, now, "UTC")  # in UTC it was due yesterday
    start, end = tasks.day_window(now, "Asia/Tokyo")
    assert (start, end) == (at(2026, 3, 2, 15), at(2026, 3, 3, 15)) and start <= due < end
    assert tasks.local_day(now, "America/Los_Angeles").isoformat() == "2026-03-02"


def test_day_window_follows_daylight_saving_changes():
    start, end = tasks.day_window(at(2026, 3, 29, 12), "Europe/Zagreb")   # clocks go forward that night
    assert end - start == timedelta(hours=23)
    assert start == at(2026, 3, 28, 23) and end == at(2026, 3, 29, 22)


def test_ids_follow_their_cause():
    assert tasks.task_id_for_cause("follow_up:o-1") == tasks.task_id_for_cause("follow_up:o-1")
    assert tasks.task_id_for_cause("follow_up:o-1") != tasks.task_id_for_cause("follow_up:o-2")
    assert tasks.reminder_id("t-1", 1) != tasks.reminder_id("t-1", 2)   # a snooze names a new reminder
    assert tasks.zone("Not/AZone").key == "UTC" and not tasks.is_time_zone("Not/AZone")
