"""The CRM on a database of its own: automatic tasks once per cause, reminders that fire only for
the task's current reminder, "today" in the salesperson's zone, one merged timeline per customer,
and events about unknown customers dead-lettered with the reason. Events go through the real
inbox and handlers, the API runs in-process. (A reminder through the real scheduler and broker is
tests/integration/test_crm.py.)"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas import (ContactLogged, InvoiceOverdue, NotificationSent, OrderPlaced, OrderShipped, TimerFired,
                     deterministic_id)
from services.crm import tasks
from tests.builders import delivery

LEAD = timedelta(hours=24)   # SALESBUS_CRM_REMINDER_LEAD_HOURS default


def profile(customer_id: str, salesperson: str, time_zone: str = "Europe/Zagreb") -> dict:
    return {"customer_id": customer_id, "name": f"Hotel {customer_id}", "segment": "hospitality",
            "language": "hr", "time_zone": "Europe/Zagreb",
            "salesperson": {"id": salesperson, "email": f"{salesperson}@salesbus.example", "time_zone": time_zone},
            "primary_contact": {"name": "Ivana Horvat", "role": "purchasing", "email": "ivana@hotel.example",
                                "phone": "+385 21 555 010"},
            "contacts": [{"name": "Marko Babić", "role": "facilities", "phone": "+385 21 555 011"}]}


@pytest.fixture
def new_customer(crm):
    """`new_customer(suffix, time_zone)`: (customer id, salesperson id, the salesperson's API client)."""
    clients = []

    def make(suffix: str = "", time_zone: str = "Europe/Zagreb"):
        cid, sp = f"cust-1{suffix}", f"sp-1{suffix}"
        api = crm.api("salesperson", sp)
        clients.append(api)
        r = api.post("/customers", json=profile(cid, sp, time_zone))
        assert r.status_code == 201, r.text
        return cid, sp, api
    yield make
    for api in clients:
        api.close()


def placed(order_id: str, customer_id: str, at: datetime) -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "channel": "edi",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 10,
                   "unit_price": {"amount": "1.85", "currency": "EUR"}}],
        "total": {"amount": "18.50", "currency": "EUR"}, "delivery": delivery(email="buyer@hotel.example"),
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


def events(crm, topic: str, key: str) -> list:
    """What the CRM emitted (committed with the handler's state change), typed."""
    return [e.event for e in crm.outbox(topic, key)]


def timer_requested(crm, reminder_id: str):
    [request] = events(crm, "TimerRequested", reminder_id)
    return request


def test_follow_up_task_is_created_once_under_redelivery_and_duplicate_shipments(crm, new_customer):
    cid, sp, api = new_customer()
    order_id, at = "o-1", crm.clock.now().replace(microsecond=0)
    crm.deliver(shipped(order_id, cid, at), event_id="ev-1")
    crm.deliver(shipped(order_id, cid, at), event_id="ev-1")        # redelivery of the same event
    crm.deliver(shipped(order_id, cid, at))                          # the warehouse sends it again, new id

    rows = crm.query("SELECT * FROM tasks WHERE customer_id = %s AND kind = 'order_follow_up'", (cid,))
    assert len(rows) == 1, "one follow-up per shipped order, however often the shipment arrives"
    assert rows[0]["due_at"] == at + timedelta(days=3) and rows[0]["salesperson_id"] == sp
    created = [e for e in events(crm, "TaskChanged", cid) if e.change == "created"]
    assert len(created) == 1 and created[0].task_id == rows[0]["task_id"]
    assert len(events(crm, "TimerRequested", rows[0]["reminder_id"])) == 1
    follow_ups = [t for t in api.get(f"/customers/{cid}").json()["open_tasks"] if t["kind"] == "order_follow_up"]
    assert [t["task_id"] for t in follow_ups] == [rows[0]["task_id"]]


def test_shipment_naming_no_customer_waits_for_its_order(crm, new_customer):
    cid, sp, api = new_customer()
    now = crm.clock.now()
    crm.deliver(shipped("o-1", None, now))   # an upstream warehouse, before OrderPlaced arrived
    follow_up = "SELECT * FROM tasks WHERE cause_key = %s"
    assert crm.query(follow_up, ("follow_up:o-1",)) == []
    crm.deliver(placed("o-1", cid, now - timedelta(hours=2)))
    rows = crm.query(follow_up, ("follow_up:o-1",))
    assert rows[0]["customer_id"] == cid and rows[0]["due_at"] == now + timedelta(days=3)


def test_profiles_are_kept_by_their_owner_or_an_operator(crm, new_customer):
    cid, sp, api = new_customer()
    body = profile(cid, sp)
    assert api.post("/customers", json=body).status_code == 409
    del body["customer_id"]
    body["primary_contact"], body["contacts"] = {"name": "Ivana Horvat", "role": "director"}, []
    r = api.put(f"/customers/{cid}", json=body)
    assert r.status_code == 200 and [(c["role"], c["primary"]) for c in r.json()["contacts"]] == \
        [("director", True)], r.text
    with crm.api("salesperson", "other-1") as other, crm.api("operator", "ops") as ops, \
            crm.api("customer", cid) as customer:
        assert other.put(f"/customers/{cid}", json=body).status_code == 403
        assert ops.put(f"/customers/{cid}", json=body).status_code == 200
        assert customer.get(f"/customers/{cid}").status_code == 403
    # one primary at most, by the body's shape (the schema says so: a primary_contact and the others)
    flagged = {**body, "contacts": [{"name": "A", "primary": True}]}
    assert api.put(f"/customers/{cid}", json=flagged).status_code == 422
    assert api.put(f"/customers/{cid}", json={**body, "time_zone": "Mars/Olympus"}).status_code == 422
    assert api.get("/customers/nobody-1").status_code == 404


def test_reassigned_task_is_reminded_to_its_new_salesperson(crm, new_customer):
    cid, sp, api = new_customer()
    task = new_task(api, cid, crm.clock.now() + timedelta(days=3))
    colleague = "sp-1-2"
    path = f"/tasks/{task['task_id']}/reassign"
    refused = api.post(path, json={"salesperson_id": colleague})
    assert (refused.status_code, refused.json()["type"]) == (409, "https://salesbus.dev/problems/unknown-salesperson"), \
        "a new salesperson needs an email"
    r = api.post(path, json={"salesperson_id": colleague, "email": f"{colleague}@salesbus.example",
                             "time_zone": "Europe/Warsaw"})
    assert r.status_code == 200 and r.json()["salesperson_id"] == colleague, r.text
    assert api.post(f"/tasks/{task['task_id']}/complete").status_code == 403, "no longer hers to complete"
    with crm.api("salesperson", colleague) as theirs:
        assert [t["task_id"] for t in theirs.get("/me/tasks").json()["items"]] == [task["task_id"]]
    assert [e.change for e in events(crm, "TaskChanged", cid)] == ["created", "reassigned"]

    crm.deliver(fired(task["reminder_id"], task["task_id"], crm.clock.now()))
    [reminder] = events(crm, "ReminderDue", task["task_id"])
    assert (reminder.salesperson_id, reminder.salesperson_email, reminder.time_zone) == (
        colleague, f"{colleague}@salesbus.example", "Europe/Warsaw")


def test_reminder_fires_the_lead_time_before_due_and_reaches_the_salesperson_once(crm, new_customer):
    cid, sp, api = new_customer()
    due = (crm.clock.now() + timedelta(days=5)).replace(microsecond=0)
    task = new_task(api, cid, due)
    request = timer_requested(crm, task["reminder_id"])
    assert request.fire_at == due - LEAD, "the reminder fires the lead time before the task is due"
    assert (request.owner, request.kind) == ("crm", "task_reminder")
    assert request.payload == {"task_id": task["task_id"], "reminder_id": task["reminder_id"]}

    one = crm.deliver(fired(task["reminder_id"], task["task_id"], request.fire_at))
    two = crm.deliver(fired(task["reminder_id"], task["task_id"], request.fire_at))   # a scheduler retry
    assert [e.topic for e in one] == ["ReminderDue"] and two == []
    [due_event] = crm.outbox("ReminderDue", task["task_id"])
    assert due_event.id == deterministic_id("ReminderDue", task["reminder_id"])
    reminder = due_event.event
    assert (reminder.salesperson_email, reminder.time_zone, reminder.due_at) == (f"{sp}@salesbus.example",
                                                                                "Europe/Zagreb", due)


def test_completed_task_withdraws_its_reminder_and_a_late_firing_sends_nothing(crm, new_customer):
    cid, sp, api = new_customer()
    task = new_task(api, cid, crm.clock.now() + timedelta(days=2))
    r = api.post(f"/tasks/{task['task_id']}/complete", json={"note": "called, all fine"})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    assert [e.timer_id for e in events(crm, "TimerCancelled", task["reminder_id"])] == [task["reminder_id"]]
    assert api.post(f"/tasks/{task['task_id']}/snooze", json={"due_at": "2099-01-01T00:00:00Z"}).status_code == 409

    late = crm.deliver(fired(task["reminder_id"], task["task_id"], crm.clock.now()))  # the cancel lost the race
    assert late == [] and events(crm, "ReminderDue", task["task_id"]) == [], \
        "a completed task's reminder must not be sent"


def test_snoozed_task_gets_a_new_reminder_and_the_old_one_never_fires(crm, new_customer):
    cid, sp, api = new_customer()
    task = new_task(api, cid, crm.clock.now() + timedelta(days=2))
    later = (crm.clock.now() + timedelta(days=6)).replace(microsecond=0)
    r = api.post(f"/tasks/{task['task_id']}/snooze", json={"due_at": later.isoformat()})
    assert r.status_code == 200, r.text
    snoozed = r.json()
    assert snoozed["reminder_id"] != task["reminder_id"] and datetime.fromisoformat(snoozed["due_at"]) == later
    assert len(events(crm, "TimerCancelled", task["reminder_id"])) == 1
    assert timer_requested(crm, snoozed["reminder_id"]).fire_at == later - LEAD

    crm.deliver(fired(task["reminder_id"], task["task_id"], crm.clock.now()))
    assert events(crm, "ReminderDue", task["task_id"]) == [], "the snoozed-away reminder must not be sent"
    crm.deliver(fired(snoozed["reminder_id"], task["task_id"], later - LEAD))
    assert [e.reminder_id for e in events(crm, "ReminderDue", task["task_id"])] == [snoozed["reminder_id"]]


def test_due_today_is_the_salespersons_calendar_day(crm, new_customer):
    tokyo_cid, tokyo_sp, tokyo = new_customer("-jp", "Asia/Tokyo")
    utc_cid, utc_sp, utc = new_customer("-utc", "UTC")
    now, zone = crm.clock.now(), ZoneInfo("Asia/Tokyo")
    tokyo_today = now.astimezone(zone).date()
    # an instant on Tokyo's today that is on another calendar day in UTC
    local = time(0, 30) if tokyo_today == now.date() else time(23, 30)
    due = datetime.combine(tokyo_today, local, zone)
    assert tasks.is_due_today(due, now, "Asia/Tokyo") and not tasks.is_due_today(due, now, "UTC")
    jp_task, utc_task = new_task(tokyo, tokyo_cid, due), new_task(utc, utc_cid, due)

    mine = tokyo.get("/me/tasks", params={"due": "today"}).json()
    assert mine["today"] == tokyo_today.isoformat() and mine["time_zone"] == "Asia/Tokyo"
    assert [t["task_id"] for t in mine["items"]] == [jp_task["task_id"]]
    assert utc.get("/me/tasks", params={"due": "today"}).json()["items"] == []
    assert [t["task_id"] for t in utc.get("/me/tasks").json()["items"]] == [utc_task["task_id"]]


def test_contact_for_unknown_customer_is_dead_lettered_with_the_reason(crm):
    ghost = "ghost-1"
    [dead] = crm.deliver(ContactLogged(entry_id="e-1", customer_id=ghost, channel="phone_call",
                                       occurred_at=crm.clock.now(), summary="inbound call", source="telephony"))
    assert (dead.topic, dead.key) == ("ContactLogged.DLQ", ghost)
    assert dead.headers["__connect.errors.exception.class.name"] == "Rejected"
    assert f"unknown customer '{ghost}'" in dead.headers["__connect.errors.exception.message"]
    # a reminder email to our own salesperson is not a customer event: skipped, not dead-lettered
    assert crm.deliver(NotificationSent(notification_id="n-1", customer_id=ghost, kind="reminder",
                                        recipient="ana@salesbus.example", subject="Reminder", language="en",
                                        sent_at=crm.clock.now()), event_id="note-1") == []
    assert crm.inbox_outcome("note-1") == "handled"


def test_timeline_merges_contacts_emails_and_orders_in_time_order(crm, new_customer):
    cid, sp, api = new_customer()
    now = crm.clock.now()
    ago = lambda days: now - timedelta(days=days)  # noqa: E731
    crm.deliver(placed("o-1", cid, ago(9)))
    crm.deliver(NotificationSent(notification_id="n-1", customer_id=cid, order_id="o-1",
                                 kind="order_confirmation", recipient="buyer@hotel.example",
                                 subject="Order confirmed", language="hr", sent_at=ago(8)))
    crm.deliver(ContactLogged(entry_id="web-1", customer_id=cid, channel="web_visit", occurred_at=ago(2),
                              summary="viewed LED tubes", source="website"))
    r = api.post(f"/customers/{cid}/contacts", json={"channel": "phone_call", "occurred_at": ago(6).isoformat(),
                                                     "summary": "asked about delivery days",
                                                     "contact_name": "Ivana Horvat"})
    assert r.status_code == 201 and r.json()["salesperson_id"] == sp, r.text
    call = r.json()["entry_id"]
    crm.deliver(ContactLogged(entry_id="mail-1", customer_id=cid, channel="email_in", occurred_at=ago(9.5),
                              summary="price list request", source="mail-gateway"))  # arrives last, oldest
    # our own ContactLogged comes back from the bus
    [own] = crm.outbox("ContactLogged", cid)
    assert own.id == deterministic_id("ContactLogged", call)
    assert crm.deliver(own.event, event_id=own.id, source="crm") == []
    assert crm.inbox_outcome(own.id) == "handled"

    ours = ["mail-1", "order:o-1:placed", "notification:n-1", call, "web-1"]

    def entries(**params):
        return api.get(f"/customers/{cid}/timeline", params={"limit": 200, **params}).json()["items"]
    newest = [e for e in entries() if e["entry_id"] in ours]
    assert [e["entry_id"] for e in newest] == ours[::-1]
    assert [e["kind"] for e in newest] == ["contact", "contact", "email", "order", "contact"]
    assert [e["entry_id"] for e in entries(order="oldest") if e["entry_id"] in ours] == ours

    contacts = api.get(f"/customers/{cid}/timeline", params={"kind": "contact", "limit": 2, "offset": 2}).json()
    assert contacts["total"] == 3, "our own call, seen again on the bus, must not be doubled"
    assert [e["entry_id"] for e in contacts["items"]] == ["mail-1"] and contacts["next"] is None
    first = api.get(f"/customers/{cid}/timeline", params={"kind": "contact", "limit": 2}).json()
    assert first["next"] == f"/customers/{cid}/timeline?kind=contact&limit=2&offset=2"
    assert api.get(f"/customers/{cid}/timeline", params={"kind": "bogus"}).status_code == 422

    quiet = lambda days: {c["customer_id"] for c in api.get("/customers", params={"no_contact_days": days}).json()["items"]}  # noqa: E731
    assert cid in quiet(5), "a web visit is not a conversation: the last contact is the call 6 days ago"
    assert cid not in quiet(7)


def test_reorder_call_follows_the_customers_ordering_cadence(crm, new_customer):
    cid, sp, api = new_customer()
    now = crm.clock.now().replace(microsecond=0)
    times = [now - timedelta(days=40), now - timedelta(days=20), now - timedelta(days=1)]
    for i, at in enumerate(times[:2]):
        crm.deliver(placed(f"o{i}-1", cid, at))
    reorder = lambda: crm.query("SELECT * FROM tasks WHERE customer_id = %s AND kind = 'reorder_call' "  # noqa: E731
                                "ORDER BY created_at", (cid,))
    assert reorder() == [], "two orders are not yet a cadence"

    crm.deliver(placed("o2-1", cid, times[2]))
    first = reorder()
    assert len(first) == 1
    # gaps of 20 and 19 days: next order expected 19.5 days after the last, the call 3 days before
    assert first[0]["due_at"] == times[2] + timedelta(days=19.5) - timedelta(days=3)
    assert first[0]["status"] == "open" and first[0]["salesperson_id"] == sp

    crm.clock.advance(timedelta(seconds=1))   # created_at orders the two tasks
    crm.deliver(placed("o3-1", cid, now))    # they reordered: the old prediction is moot
    assert len(reorder()) == 2
    old, new = reorder()
    assert (old["task_id"], old["status"]) == (first[0]["task_id"], "cancelled")
    assert new["status"] == "open" and new["cause_key"].endswith("o3-1")
    assert len(events(crm, "TimerCancelled", old["reminder_id"])) == 1


def test_a_nul_in_a_query_or_text_field_is_refused_not_a_server_error(crm, new_customer):
    """Found by the OpenAPI fuzzing (tests/integration/test_openapi_fuzz.py): GET /me/tasks with a
    NUL in salesperson_id answered 500 (PostgreSQL refuses NUL in text). Query parameters, path ids
    and text fields are bounded: 422 instead."""
    cid, sp, api = new_customer()
    with crm.api("operator", "op-1") as ops:
        assert ops.get("/me/tasks", params={"salesperson_id": "sp\x00x"}).status_code == 422
        assert ops.get("/customers", params={"salesperson_id": "sp\x00x"}).status_code == 422
        assert ops.get("/me/tasks", params={"salesperson_id": sp}).status_code == 200
    assert api.get("/customers/a%00b").status_code == 422
    assert api.get(f"/tasks/{'t' * 201}").status_code == 422
    logged = api.post(f"/customers/{cid}/contacts", json={"channel": "phone_call", "summary": "left\x00a message"})
    assert logged.status_code == 422 and "left" not in logged.text
    profile_body = profile(cid, sp)
    profile_body["salesperson"]["email"] = "not an email"
    assert api.put(f"/customers/{cid}", json={k: v for k, v in profile_body.items() if k != "customer_id"}
                   ).status_code == 422


def test_an_overdue_invoice_gives_its_salesperson_one_call_task_across_steps_and_redelivery(crm, new_customer):
    cid, sp, api = new_customer()
    now = crm.clock.now().replace(microsecond=0)

    def overdue(step: int, on_hold: bool = False) -> InvoiceOverdue:
        return InvoiceOverdue(invoice_number="INV-2026-000001", customer_id=cid, step_days=step,
                              days_overdue=step, open_amount={"amount": "70.00", "currency": "EUR"},
                              due_date=(now - timedelta(days=step)).date(), on_hold=on_hold, noticed_at=now)
    crm.deliver(overdue(3), event_id="ov-1")
    crm.deliver(overdue(3), event_id="ov-1")                 # redelivered
    crm.deliver(overdue(30, on_hold=True))                   # a later step of the same invoice
    rows = crm.query("SELECT * FROM tasks WHERE customer_id = %s AND cause_key LIKE 'overdue:%%'", (cid,))
    assert len(rows) == 1 and rows[0]["salesperson_id"] == sp
    assert "INV-2026-000001" in rows[0]["title"] and "70.00 EUR" in rows[0]["notes"]
    # an account the CRM has no profile for: no task, and no dead letter either
    assert crm.deliver(overdue(3).model_copy(update={"customer_id": "nobody-1"}), event_id="stray-1") == []
    assert crm.inbox_outcome("stray-1") == "handled"
