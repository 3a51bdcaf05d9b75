"""Recurring sales and the salesperson's reminders, end to end through the HTTP APIs, the bus,
every service and the SMTP server, on the shared controllable clock."""
from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from runtime.embedded import read_mail
from tests.conftest import wait_until
from tests.e2e.conftest import running_shop, delivery as base_delivery, open_account


def delivery(email: str) -> dict:
    return base_delivery(email, city="Wrocław", country="PL", postal_code="50-001")

pytestmark = pytest.mark.integration
ALL = ("cart", "payments", "orders", "notifications", "scheduler", "crm")
TZ = "Europe/Warsaw"


@pytest.fixture(scope="module")
def system(harness):
    return running_shop(harness, *ALL)


def standing_order(system, customer: str, email: str) -> str:
    """"1000 light bulbs every two months, until further notice", placed at the cart's checkout."""
    shop = system.client("cart", "customer", customer)
    cart = shop.post("/carts").json()["cart_id"]
    assert shop.put(f"/carts/{cart}/lines/BULB-LED-9W", json={"quantity": 1000}).status_code == 200
    start = (system.clock.now().astimezone(ZoneInfo(TZ)) + timedelta(days=1)).date()
    r = shop.post(f"/carts/{cart}/checkout", headers={"Idempotency-Key": uuid.uuid4().hex}, json={
        "delivery": delivery(email), "payment": {"mode": "account"}, "language": "pl",
        "recurrence": {"every": 2, "unit": "months", "start_date": start.isoformat(), "time_zone": TZ}})
    assert r.status_code == 202, r.text
    return r.json()["standing_order_id"]


def orders_of(system, customer: str) -> list[dict]:
    with system.client("orders", "operator", "e2e-operator") as api:
        return api.get(f"/customers/{customer}/orders").json()


def test_standing_order_places_each_occurrence_once_until_cancelled(system, stack, unique):
    customer, control = f"wroclaw-{unique}", f"control-{unique}"
    email = f"zakupy-{unique}@example.pl"
    for c in (customer, control):
        open_account(system, c, "100000.00")
    so = standing_order(system, customer, email)
    scheduler = system.client("scheduler", "customer", customer)
    wait_until(lambda: scheduler.get(f"/standing-orders/{so}").status_code == 200, timeout=60,
               message="the scheduler to create the standing order")

    # two occurrences: tomorrow and two months later
    system.clock.advance(timedelta(days=63))
    wait_until(lambda: sum(o["status"] == "confirmed" for o in orders_of(system, customer)) == 2, timeout=90,
               message="two confirmed occurrences")
    placed = sorted(orders_of(system, customer), key=lambda o: o["occurrence"])
    assert [(o["standing_order_id"], o["occurrence"]) for o in placed] == [(so, 1), (so, 2)]
    wait_until(lambda: len([m for m in read_mail(stack.mail.maildir) if m["To"] == email]) == 2, timeout=60,
               message="two confirmation emails")
    assert {m["X-Salesbus-Language"] for m in read_mail(stack.mail.maildir) if m["To"] == email} == {"pl"}

    # "until further notice": the customer cancels, and nothing more is ordered
    assert scheduler.post(f"/standing-orders/{so}/cancel").json()["status"] == "cancelled"
    control_so = standing_order(system, control, f"c-{unique}@example.pl")
    system.clock.advance(timedelta(days=70))
    # the control order's first occurrence proves the scheduler ticked past occurrence 3's due time
    wait_until(lambda: any(o["status"] == "confirmed" for o in orders_of(system, control)), timeout=90,
               message=f"the control standing order {control_so} to be placed")
    assert len(orders_of(system, customer)) == 2


def test_shipment_creates_a_follow_up_and_its_reminder_reaches_the_salesperson_ahead_of_time(system, stack, unique):
    customer, salesperson = f"hotel-{unique}", f"ana-{unique}"
    sp_email = f"{salesperson}@salesbus.example"
    crm = system.client("crm", "salesperson", salesperson)
    r = crm.post("/customers", json={
        "customer_id": customer, "name": "Hotel Split d.o.o.", "segment": "hospitality", "language": "hr",
        "time_zone": "Europe/Zagreb",
        "salesperson": {"id": salesperson, "email": sp_email, "time_zone": "Europe/Zagreb", "language": "hr"},
        "contacts": [{"name": "Ivana Horvat", "role": "purchasing", "email": "ivana@example.hr", "primary": True}]})
    assert r.status_code == 201, r.text
    shop = system.client("cart", "customer", customer)
    cart = shop.post("/carts").json()["cart_id"]
    shop.put(f"/carts/{cart}/lines/TUBE-T8-1500", json={"quantity": 20})
    order_id = shop.post(f"/carts/{cart}/checkout", headers={"Idempotency-Key": uuid.uuid4().hex}, json={
        "delivery": delivery(f"h-{unique}@example.hr"), "payment": {"mode": "card", "card_token": "tok_visa_approved"},
        "language": "hr"}).json()["order_id"]
    wait_until(lambda: any(o["status"] == "confirmed" for o in orders_of(system, customer)), timeout=60)
    with system.client("orders", "warehouse", "dc") as dc:
        assert dc.post(f"/orders/{order_id}/shipments", json={"carrier": "DHL", "tracking_number": f"T{unique}",
                                                              "distribution_centre": "DC Zagreb"}).status_code == 201

    def follow_ups():
        tasks = crm.get("/me/tasks", params={"due": "all"}).json()
        tasks = tasks.get("tasks", tasks) if isinstance(tasks, dict) else tasks
        return [t for t in tasks if t["customer_id"] == customer and t["kind"] == "order_follow_up"]
    (task,) = wait_until(follow_ups, timeout=60, message="the follow-up task after shipping")
    assert not [m for m in read_mail(stack.mail.maildir) if m["To"] == sp_email], "reminded too early"
    # the reminder fires 24 h before the task is due (3 days after shipping)
    system.clock.advance(timedelta(days=2, hours=1))
    wait_until(lambda: [m for m in read_mail(stack.mail.maildir) if m["To"] == sp_email], timeout=60,
               message="the reminder email to the salesperson")
    (mail,) = [m for m in read_mail(stack.mail.maildir) if m["To"] == sp_email]
    assert mail["X-Salesbus-Kind"] == "reminder" and mail["X-Salesbus-Language"] == "hr"
