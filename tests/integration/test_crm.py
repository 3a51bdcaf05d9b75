"""The CRM on the real stack: automatic tasks once per cause, reminders that fire only for the
task's current reminder, "today" in the salesperson's zone, one merged timeline per customer,
and events about unknown customers dead-lettered with the reason.

Other services may run in the same session and react to the orders published here (confirm
them, email about them): assertions look at this test's own entries, never at totals.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import dict_row

from runtime.config import with_dbname
from runtime.tap import tap
from schemas import (ContactLogged, NotificationSent, OrderPlaced, OrderShipped, TimerFired, deterministic_id,
                     parse_record, REGISTRY)
from services.crm import tasks
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
LEAD = timedelta(hours=24)   # SALESBUS_CRM_REMINDER_LEAD_HOURS default
WAIT = 60


@pytest.fixture
def crm(harness):
    harness.start("crm")
    return harness


def sql(cfg, query: str, params=()) -> list[dict]:
    with psycopg.connect(with_dbname(cfg.database_url, "crm"), row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def handled(cfg, event_id: str) -> bool:
    return bool(sql(cfg, "SELECT 1 FROM inbox WHERE event_id = %s", (event_id,)))


def outbox(cfg, topic: str, key: str) -> list:
    """What the CRM emitted (committed with the handler's state change), parsed."""
    rows = sql(cfg, "SELECT value FROM outbox WHERE topic = %s AND key = %s ORDER BY id", (topic, key))
    return [parse_record(bytes(r["value"]), REGISTRY) for r in rows]


def on_bus(cfg, topic: str, key: str) -> list:
    return list(tap(cfg.kafka_common(), [topic], follow=False, idle_exit_s=1.0, keys={key}))


def profile(customer_id: str, salesperson: str, time_zone: str = "Europe/Zagreb") -> dict:
    return {"customer_id": customer_id, "name": f"Hotel {customer_id}", "segment": "hospitality",
            "language": "hr", "time_zone": "Europe/Zagreb",
            "salesperson": {"id": salesperson, "email": f"{salesperson}@salesbus.example", "time_zone": time_zone},
            "contacts": [{"name": "Ivana Horvat", "role": "purchasing", "email": "ivana@hotel.example",
                          "phone": "+385 21 555 010", "primary": True},
                         {"name": "Marko Babić", "role": "facilities", "phone": "+385 21 555 011"}]}


def new_customer(crm, unique: str, suffix: str = "", time_zone: str = "Europe/Zagreb"):
    cid, sp = f"cust-{unique}{suffix}", f"sp-{unique}{suffix}"
    api = crm.client("crm", "salesperson", sp)
    r = api.post("/customers", json=profile(cid, sp, time_zone))
    assert r.status_code == 201, r.text
    return cid, sp, api


def placed(order_id: str, customer_id: str, at: datetime) -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "channel": "edi",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 10, "unit_price": {"amount": "1.85", "currency": "EUR"}}],
        "total": {"amount": "18.50", "currency": "EUR"},
        "delivery": {"recipient": "Goods in", "address_lines": ["Obala 1"], "city": "Split", "postal_code": "21000",
                     "country": "HR", "phone": "+385 21 000", "email": "buyer@hotel.example"},
        "payment": {"mode": "card", "card_token": "tok_visa_approved"}, "placed_at": at})


def shipped(order_id: str, customer_id: str | None, at: datetime) -> OrderShipped:
    return OrderShipped(order_id=order_id, customer_id=customer_id, carrier="GLS", tracking_number=f"T{order_id}",
                        distribution_centre="Zagreb DC", shipped_at=at)


def fired(reminder_id: str, task_id: str, fire_at: datetime) -> TimerFired:
    return TimerFired(timer_id=reminder_id, owner="crm", kind="task_reminder", fire_at=fire_at, fired_at=fire_at,
                      payload={"task_id": task_id, "reminder_id": reminder_id})


def new_task(api, cid: str, due: datetime, title: str = "Call about the spring catalogue") -> dict:
    r = api.post(f"/customers/{cid}/tasks", json={"title": title, "due_at": due.isoformat()})
    assert r.status_code == 201, r.text
    return r.json()


def timer_requested(cfg, reminder_id: str):
    recs = wait_until(lambda: on_bus(cfg, "TimerRequested", reminder_id), WAIT, message="TimerRequested")
    return parse_record(recs[0].value, REGISTRY)[1]


def test_follow_up_task_is_created_once_under_redelivery_and_duplicate_shipments(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    order_id, at = f"o-{unique}", crm.clock.now().replace(microsecond=0)
    first = bus.publish(shipped(order_id, cid, at))
    bus.publish(shipped(order_id, cid, at), event_id=first)        # redelivery of the same event
    again = bus.publish(shipped(order_id, cid, at))                 # the warehouse sends it again, new id
    wait_until(lambda: handled(cfg, again), WAIT, message="the duplicate shipment to be handled")  # same partition

    rows = sql(cfg, "SELECT * FROM tasks WHERE customer_id = %s AND kind = 'order_follow_up'", (cid,))
    assert len(rows) == 1, "one follow-up per shipped order, however often the shipment arrives"
    assert rows[0]["due_at"] == at + timedelta(days=3) and rows[0]["salesperson_id"] == sp
    created = [e for _, e in outbox(cfg, "TaskChanged", cid) if e.change == "created"]
    assert len(created) == 1 and created[0].task_id == rows[0]["task_id"]
    assert len(outbox(cfg, "TimerRequested", rows[0]["reminder_id"])) == 1
    follow_ups = [t for t in api.get(f"/customers/{cid}").json()["open_tasks"] if t["kind"] == "order_follow_up"]
    assert [t["task_id"] for t in follow_ups] == [rows[0]["task_id"]]


def test_shipment_naming_no_customer_waits_for_its_order(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    now = crm.clock.now()
    early = bus.publish(shipped(f"o-{unique}", None, now))   # an upstream warehouse, before OrderPlaced arrived
    wait_until(lambda: handled(cfg, early), WAIT, message="the early shipment")
    follow_up = "SELECT * FROM tasks WHERE cause_key = %s"
    assert sql(cfg, follow_up, (f"follow_up:o-{unique}",)) == []
    bus.publish(placed(f"o-{unique}", cid, now - timedelta(hours=2)))
    rows = wait_until(lambda: sql(cfg, follow_up, (f"follow_up:o-{unique}",)), WAIT, message="the follow-up task")
    assert rows[0]["customer_id"] == cid and rows[0]["due_at"] == now + timedelta(days=3)


def test_profiles_are_kept_by_their_owner_or_an_operator(crm, unique):
    cid, sp, api = new_customer(crm, unique)
    body = profile(cid, sp)
    assert api.post("/customers", json=body).status_code == 409
    del body["customer_id"]
    body["contacts"] = [{"name": "Ivana Horvat", "role": "director", "primary": True}]
    r = api.put(f"/customers/{cid}", json=body)
    assert r.status_code == 200 and [c["role"] for c in r.json()["contacts"]] == ["director"], r.text
    assert crm.client("crm", "salesperson", f"other-{unique}").put(f"/customers/{cid}", json=body).status_code == 403
    assert crm.client("crm", "operator", "ops").put(f"/customers/{cid}", json=body).status_code == 200
    assert crm.client("crm", "customer", cid).get(f"/customers/{cid}").status_code == 403
    two_primaries = {**body, "contacts": [{"name": "A", "primary": True}, {"name": "B", "primary": True}]}
    assert api.put(f"/customers/{cid}", json=two_primaries).status_code == 422
    assert api.put(f"/customers/{cid}", json={**body, "time_zone": "Mars/Olympus"}).status_code == 422
    assert api.get(f"/customers/nobody-{unique}").status_code == 404


def test_reassigned_task_is_reminded_to_its_new_salesperson(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    task = new_task(api, cid, crm.clock.now() + timedelta(days=3))
    colleague = f"sp-{unique}-2"
    path = f"/tasks/{task['task_id']}/reassign"
    assert api.post(path, json={"salesperson_id": colleague}).status_code == 422, "a new salesperson needs an email"
    r = api.post(path, json={"salesperson_id": colleague, "email": f"{colleague}@salesbus.example",
                             "time_zone": "Europe/Warsaw"})
    assert r.status_code == 200 and r.json()["salesperson_id"] == colleague, r.text
    assert api.post(f"/tasks/{task['task_id']}/complete").status_code == 403, "no longer hers to complete"
    theirs = crm.client("crm", "salesperson", colleague).get("/me/tasks").json()["tasks"]
    assert [t["task_id"] for t in theirs] == [task["task_id"]]
    assert [e.change for _, e in outbox(cfg, "TaskChanged", cid)] == ["created", "reassigned"]

    when = bus.publish(fired(task["reminder_id"], task["task_id"], crm.clock.now()))
    wait_until(lambda: handled(cfg, when), WAIT, message="the reminder timer")
    [(_, reminder)] = outbox(cfg, "ReminderDue", task["task_id"])
    assert (reminder.salesperson_id, reminder.salesperson_email, reminder.time_zone) == (
        colleague, f"{colleague}@salesbus.example", "Europe/Warsaw")


def test_reminder_fires_the_lead_time_before_due_and_reaches_the_salesperson_once(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    due = (crm.clock.now() + timedelta(days=5)).replace(microsecond=0)
    task = new_task(api, cid, due)
    request = timer_requested(cfg, task["reminder_id"])
    assert request.fire_at == due - LEAD, "the reminder fires the lead time before the task is due"
    assert (request.owner, request.kind) == ("crm", "task_reminder")
    assert request.payload == {"task_id": task["task_id"], "reminder_id": task["reminder_id"]}

    one = bus.publish(fired(task["reminder_id"], task["task_id"], request.fire_at))
    two = bus.publish(fired(task["reminder_id"], task["task_id"], request.fire_at))   # a scheduler retry
    wait_until(lambda: handled(cfg, one) and handled(cfg, two), WAIT, message="both timer firings")
    due_events = outbox(cfg, "ReminderDue", task["task_id"])
    assert len(due_events) == 1
    ce, reminder = due_events[0]
    assert ce.id == deterministic_id("ReminderDue", task["reminder_id"])
    assert (reminder.salesperson_email, reminder.time_zone, reminder.due_at) == (f"{sp}@salesbus.example",
                                                                                "Europe/Zagreb", due)
    wait_until(lambda: on_bus(cfg, "ReminderDue", task["task_id"]), WAIT, message="ReminderDue on the bus")


def test_completed_task_withdraws_its_reminder_and_a_late_firing_sends_nothing(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    task = new_task(api, cid, crm.clock.now() + timedelta(days=2))
    r = api.post(f"/tasks/{task['task_id']}/complete", json={"note": "called, all fine"})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    assert [e.timer_id for _, e in outbox(cfg, "TimerCancelled", task["reminder_id"])] == [task["reminder_id"]]
    assert api.post(f"/tasks/{task['task_id']}/snooze", json={"due_at": "2099-01-01T00:00:00Z"}).status_code == 409

    late = bus.publish(fired(task["reminder_id"], task["task_id"], crm.clock.now()))  # the cancel lost the race
    wait_until(lambda: handled(cfg, late), WAIT, message="the late timer to be handled")
    assert outbox(cfg, "ReminderDue", task["task_id"]) == [], "a completed task's reminder must not be sent"


def test_snoozed_task_gets_a_new_reminder_and_the_old_one_never_fires(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    task = new_task(api, cid, crm.clock.now() + timedelta(days=2))
    later = (crm.clock.now() + timedelta(days=6)).replace(microsecond=0)
    r = api.post(f"/tasks/{task['task_id']}/snooze", json={"due_at": later.isoformat()})
    assert r.status_code == 200, r.text
    snoozed = r.json()
    assert snoozed["reminder_id"] != task["reminder_id"] and datetime.fromisoformat(snoozed["due_at"]) == later
    assert len(outbox(cfg, "TimerCancelled", task["reminder_id"])) == 1
    assert timer_requested(cfg, snoozed["reminder_id"]).fire_at == later - LEAD

    stale = bus.publish(fired(task["reminder_id"], task["task_id"], crm.clock.now()))
    wait_until(lambda: handled(cfg, stale), WAIT, message="the stale timer to be handled")
    assert outbox(cfg, "ReminderDue", task["task_id"]) == [], "the snoozed-away reminder must not be sent"
    current = bus.publish(fired(snoozed["reminder_id"], task["task_id"], later - LEAD))
    wait_until(lambda: handled(cfg, current), WAIT, message="the current timer to be handled")
    assert [e.reminder_id for _, e in outbox(cfg, "ReminderDue", task["task_id"])] == [snoozed["reminder_id"]]


def test_due_today_is_the_salespersons_calendar_day(crm, cfg, unique):
    tokyo_cid, tokyo_sp, tokyo = new_customer(crm, unique, "-jp", "Asia/Tokyo")
    utc_cid, utc_sp, utc = new_customer(crm, unique, "-utc", "UTC")
    now, zone = crm.clock.now(), ZoneInfo("Asia/Tokyo")
    tokyo_today = now.astimezone(zone).date()
    # an instant on Tokyo's today that is on another calendar day in UTC
    local = time(0, 30) if tokyo_today == now.date() else time(23, 30)
    due = datetime.combine(tokyo_today, local, zone)
    assert tasks.is_due_today(due, now, "Asia/Tokyo") and not tasks.is_due_today(due, now, "UTC")
    jp_task, utc_task = new_task(tokyo, tokyo_cid, due), new_task(utc, utc_cid, due)

    mine = tokyo.get("/me/tasks", params={"due": "today"}).json()
    assert mine["today"] == tokyo_today.isoformat() and mine["time_zone"] == "Asia/Tokyo"
    assert [t["task_id"] for t in mine["tasks"]] == [jp_task["task_id"]]
    assert utc.get("/me/tasks", params={"due": "today"}).json()["tasks"] == []
    assert [t["task_id"] for t in utc.get("/me/tasks").json()["tasks"]] == [utc_task["task_id"]]


def test_contact_for_unknown_customer_is_dead_lettered_with_the_reason(crm, cfg, bus, unique):
    ghost = f"ghost-{unique}"
    bus.publish(ContactLogged(entry_id=f"e-{unique}", customer_id=ghost, channel="phone_call",
                              occurred_at=crm.clock.now(), summary="inbound call", source="telephony"))
    dead = wait_until(lambda: on_bus(cfg, "ContactLogged.DLQ", ghost), WAIT, message="the DLQ record")
    assert dead[0].headers["__connect.errors.exception.class.name"] == "Rejected"
    assert f"unknown customer '{ghost}'" in dead[0].headers["__connect.errors.exception.message"]
    # a reminder email to our own salesperson is not a customer event: skipped, not dead-lettered
    note = bus.publish(NotificationSent(notification_id=f"n-{unique}", customer_id=ghost, kind="reminder",
                                        recipient="ana@salesbus.example", subject="Reminder", language="en",
                                        sent_at=crm.clock.now()))
    wait_until(lambda: handled(cfg, note), WAIT, message="the reminder notification")
    assert sql(cfg, "SELECT outcome FROM inbox WHERE event_id = %s", (note,))[0]["outcome"] == "handled"


def test_timeline_merges_contacts_emails_and_orders_in_time_order(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    now = crm.clock.now()
    ago = lambda days: now - timedelta(days=days)  # noqa: E731
    bus.publish(placed(f"o-{unique}", cid, ago(9)))
    bus.publish(NotificationSent(notification_id=f"n-{unique}", customer_id=cid, order_id=f"o-{unique}",
                                 kind="order_confirmation", recipient="buyer@hotel.example",
                                 subject="Order confirmed", language="hr", sent_at=ago(8)))
    bus.publish(ContactLogged(entry_id=f"web-{unique}", customer_id=cid, channel="web_visit", occurred_at=ago(2),
                              summary="viewed LED tubes", source="website"))
    r = api.post(f"/customers/{cid}/contacts", json={"channel": "phone_call", "occurred_at": ago(6).isoformat(),
                                                     "summary": "asked about delivery days",
                                                     "contact_name": "Ivana Horvat"})
    assert r.status_code == 201 and r.json()["salesperson_id"] == sp, r.text
    call = r.json()["entry_id"]
    bus.publish(ContactLogged(entry_id=f"mail-{unique}", customer_id=cid, channel="email_in", occurred_at=ago(9.5),
                              summary="price list request", source="mail-gateway"))  # arrives last, oldest

    ours = [f"mail-{unique}", f"order:o-{unique}:placed", f"notification:n-{unique}", call, f"web-{unique}"]
    def entries(**params):
        return api.get(f"/customers/{cid}/timeline", params={"page_size": 200, **params}).json()["entries"]
    wait_until(lambda: set(ours) <= {e["entry_id"] for e in entries()}, WAIT, message="every entry on the timeline")
    wait_until(lambda: handled(cfg, deterministic_id("ContactLogged", call)), WAIT,
               message="our own ContactLogged to come back")
    newest = [e for e in entries() if e["entry_id"] in ours]
    assert [e["entry_id"] for e in newest] == ours[::-1]
    assert [e["kind"] for e in newest] == ["contact", "contact", "email", "order", "contact"]
    assert [e["entry_id"] for e in entries(order="oldest") if e["entry_id"] in ours] == ours

    contacts = api.get(f"/customers/{cid}/timeline", params={"kind": "contact", "page_size": 2, "page": 2}).json()
    assert contacts["total"] == 3, "our own call, seen again on the bus, must not be doubled"
    assert [e["entry_id"] for e in contacts["entries"]] == [f"mail-{unique}"]
    assert api.get(f"/customers/{cid}/timeline", params={"kind": "bogus"}).status_code == 422

    quiet = lambda days: {c["customer_id"] for c in api.get("/customers", params={"no_contact_days": days}).json()["customers"]}  # noqa: E731
    assert cid in quiet(5), "a web visit is not a conversation: the last contact is the call 6 days ago"
    assert cid not in quiet(7)


def test_reorder_call_follows_the_customers_ordering_cadence(crm, cfg, bus, unique):
    cid, sp, api = new_customer(crm, unique)
    now = crm.clock.now().replace(microsecond=0)
    times = [now - timedelta(days=40), now - timedelta(days=20), now - timedelta(days=1)]
    ids = [bus.publish(placed(f"o{i}-{unique}", cid, at)) for i, at in enumerate(times[:2])]
    wait_until(lambda: all(handled(cfg, i) for i in ids), WAIT, message="the first two orders")
    reorder = lambda: sql(cfg, "SELECT * FROM tasks WHERE customer_id = %s AND kind = 'reorder_call' "  # noqa: E731
                               "ORDER BY created_at", (cid,))
    assert reorder() == [], "two orders are not yet a cadence"

    bus.publish(placed(f"o2-{unique}", cid, times[2]))
    first = wait_until(reorder, WAIT, message="the reorder task")
    assert len(first) == 1
    # gaps of 20 and 19 days: next order expected 19.5 days after the last, the call 3 days before
    assert first[0]["due_at"] == times[2] + timedelta(days=19.5) - timedelta(days=3)
    assert first[0]["status"] == "open" and first[0]["salesperson_id"] == sp

    bus.publish(placed(f"o3-{unique}", cid, now))    # they reordered: the old prediction is moot
    wait_until(lambda: len(reorder()) == 2, WAIT, message="the new reorder task")
    old, new = reorder()
    assert (old["task_id"], old["status"]) == (first[0]["task_id"], "cancelled")
    assert new["status"] == "open" and new["cause_key"].endswith(f"o3-{unique}")
    assert len(outbox(cfg, "TimerCancelled", old["reminder_id"])) == 1


def test_reminder_end_to_end_through_the_scheduler(harness, cfg, unique):
    try:
        import services.scheduler.service  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"services.scheduler.service cannot be imported: {exc}")
    harness.start("crm", "scheduler")
    cid, sp, api = new_customer(harness, unique)
    due = harness.clock.now() + LEAD + timedelta(seconds=3)   # the reminder is due in 3 seconds
    task = new_task(api, cid, due)
    recs = wait_until(lambda: on_bus(cfg, "ReminderDue", task["task_id"]), WAIT, message="the scheduler's firing")
    assert parse_record(recs[0].value, REGISTRY)[1].reminder_id == task["reminder_id"]
