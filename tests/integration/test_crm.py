"""The CRM on the real broker: what only the bus shows. A task's reminder requested by the CRM,
fired by the scheduler's timer and announced as ReminderDue; a customer learned from a first
order that arrives on the bus (nothing dead-lettered); the supplier balance following payments'
announcements; the customer view kept from orders', payments' and the scheduler's events. Every
other CRM behaviour is tested on the handler tier (tests/handlers/test_crm.py)."""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from runtime.config import with_dbname
from runtime.tap import tap
from schemas import REGISTRY, SupplierAccountChanged, parse_record
from tests.conftest import wait_until
from tests.handlers.test_crm import LEAD, new_task, placed, profile, shipped

pytestmark = pytest.mark.integration
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


def on_bus(cfg, topic: str, key: str) -> list:
    return list(tap(cfg.kafka_common(), [topic], follow=False, idle_exit_s=1.0, keys={key}))


def new_customer(crm, unique: str):
    cid, sp = f"cust-{unique}", f"sp-{unique}"
    api = crm.client("crm", "salesperson", sp)
    r = api.post("/customers", json=profile(cid, sp))
    assert r.status_code == 201, r.text
    return cid, sp, api


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


def test_an_order_from_a_customer_without_a_profile_creates_one_and_reaches_the_timeline(crm, cfg, bus, unique):
    """Issue 16: an OrderPlaced for a customer the CRM had no profile for was dead-lettered
    ("unknown customer ... has no profile"), and once the profile was made the order never reached
    the timeline. Now the first order creates a profile from its delivery details, marked for a
    salesperson to complete; a redelivery and a second order change nothing about it."""
    cid, order_id = f"new-{unique}", f"o-{unique}"
    at = crm.clock.now().replace(microsecond=0)
    first = bus.publish(placed(order_id, cid, at))
    bus.publish(placed(order_id, cid, at), event_id=first)                 # redelivered
    wait_until(lambda: handled(cfg, first), WAIT, message="the first order to be handled")  # another key
    again = bus.publish(placed(f"o2-{unique}", cid, at + timedelta(hours=1)))  # their second order
    wait_until(lambda: handled(cfg, again), WAIT, message="the second order to be handled")
    assert [r["outcome"] for r in sql(cfg, "SELECT outcome FROM inbox WHERE event_id IN (%s, %s)",
                                      (first, again))] == ["handled", "handled"]

    with crm.client("crm", "salesperson", f"sp-{unique}") as api:
        got = api.get(f"/customers/{cid}")
        assert got.status_code == 200, got.text
        p = got.json()
        assert (p["source"], p["needs_review"], p["first_order_id"]) == ("first_order", True, order_id)
        assert (p["time_zone"], p["segment"], p["salesperson"]["id"]) == ("Europe/Zagreb", "unclassified", "sales-desk")
        assert [(c["name"], c["email"], c["phone"], c["primary"]) for c in p["contacts"]] == \
            [("Goods in", "buyer@hotel.example", "+385 21 000", True)]
        assert p["first_order_delivery"]["city"] == "Split"
        entries = api.get(f"/customers/{cid}/timeline", params={"kind": "order_placed"}).json()["items"]
        assert sorted(e["entry_id"] for e in entries) == sorted([f"order:{order_id}:placed",
                                                                 f"order:o2-{unique}:placed"])
        # the salesperson completes the profile: no longer waiting for review
        body = {k: v for k, v in profile(cid, f"sp-{unique}").items() if k != "customer_id"}
        with crm.client("crm", "operator", f"op-{unique}") as ops:
            assert ops.put(f"/customers/{cid}", json=body).status_code == 200
        done = api.get(f"/customers/{cid}").json()
        assert (done["source"], done["needs_review"], done["salesperson"]["id"]) == \
            ("first_order", False, f"sp-{unique}")
    assert on_bus(cfg, "OrderPlaced.DLQ", order_id) == []


def test_the_supplier_balance_follows_every_charge_and_payment_and_never_rolls_back(harness, cfg, bus, unique):
    """Issue 16: the CRM showed 0.00 where payments said 271.70. Every account change is announced
    (SupplierAccountChanged, in the charging transaction) with a version; the CRM keeps the highest
    version, not the latest changed_at, so an old announcement replayed with a clock ahead (another
    replica) cannot put the balance back."""
    harness.start("crm", "payments")
    cid, sp, api = new_customer(harness, unique)
    with harness.client("payments", "operator", f"op-{unique}") as ops:
        opened = ops.put(f"/accounts/{cid}", json={"credit_limit": "1000.00", "currency": "EUR",
                                                   "payment_terms_days": 30})
        assert opened.status_code == 201, opened.text
        order = placed(f"o-{unique}", cid, harness.clock.now()).model_copy(update={"payment": {"mode": "account"}})
        bus.publish(order)

        def crm_account():
            return api.get(f"/customers/{cid}").json()["supplier_account"] or {}
        wait_until(lambda: crm_account().get("open_balance") == "18.50", WAIT, message="the charge in the CRM")
        assert ops.get(f"/accounts/{cid}").json()["open_balance"] == "18.50"
        paid = ops.post(f"/accounts/{cid}/payments", json={"payer_reference": f"bank-{unique}", "amount": "5.00",
                                                           "currency": "EUR"})
        assert paid.status_code == 201, paid.text
        wait_until(lambda: crm_account().get("open_balance") == "13.50", WAIT, message="the payment in the CRM")
        figures = ops.get(f"/accounts/{cid}").json()
    shown = crm_account()
    assert (shown["open_balance"], shown["available_credit"], shown["version"]) == \
        (figures["open_balance"], "986.50", 3)

    first = [e for e in (r.event() for r in on_bus(cfg, "SupplierAccountChanged", cid))
             if e["data"]["version"] == 1]
    stale = SupplierAccountChanged.model_validate(
        {**first[0]["data"], "changed_at": harness.clock.now() + timedelta(days=365)})
    replay = bus.publish(stale)
    wait_until(lambda: handled(cfg, replay), WAIT, message="the stale announcement")
    assert crm_account()["open_balance"] == "13.50", "an older version must not roll the balance back"


def test_a_customers_orders_standing_orders_and_lookup_by_email_from_one_place(crm, cfg, bus, unique):
    """Issue 16: support could not find a customer by e-mail or name, nor see their orders,
    standing orders and account in one place. The CRM keeps them from the events it consumes."""
    from schemas import StandingOrderChanged
    cid, sp, api = new_customer(crm, unique)
    now = crm.clock.now().replace(microsecond=0)
    older, newer = f"o1-{unique}", f"o2-{unique}"
    bus.publish(shipped(older, cid, now - timedelta(days=1)))   # overtook its OrderPlaced (another topic)
    bus.publish(placed(older, cid, now - timedelta(days=2)))
    bus.publish(placed(newer, cid, now))
    so = StandingOrderChanged.model_validate({
        "standing_order_id": f"so-{unique}", "customer_id": cid, "lines": [{"sku": "BULB-LED-9W", "quantity": 10}],
        "delivery": placed(newer, cid, now).delivery.model_dump(), "payment": {"mode": "account"},
        "interval": {"every": 2, "unit": "weeks"}, "start_date": (now + timedelta(days=7)).date().isoformat(),
        "time_zone": "Europe/Zagreb", "change": "created", "status": "active", "changed_at": now})
    last = bus.publish(so)
    wait_until(lambda: handled(cfg, last), WAIT, message="the standing order")
    def both():
        v = api.get(f"/customers/{cid}").json()
        return v if v["orders_total"] == 2 and v["recent_orders"][1]["status"] == "shipped" else None
    try:
        view = wait_until(both, WAIT, message="both orders in the view")
    except AssertionError:
        raise AssertionError(f"the view: {api.get(f'/customers/{cid}').json()}") from None
    assert [o["order_id"] for o in view["recent_orders"]] == [newer, older]
    assert (view["recent_orders"][0]["status"], view["recent_orders"][0]["total"]) == ("placed", "18.50")
    assert [(s["standing_order_id"], s["status"], s["interval"]) for s in view["standing_orders"]] == \
        [(f"so-{unique}", "active", {"every": 2, "unit": "weeks"})]
    orders = api.get(f"/customers/{cid}/orders", params={"limit": 1}).json()
    assert ([o["order_id"] for o in orders["items"]], orders["total"]) == ([newer], 2)
    assert api.get(orders["next"]).json()["items"][0]["order_id"] == older

    found = api.get("/customers", params={"q": "IVANA@hotel"}).json()     # a key contact's e-mail, any case
    assert cid in [c["customer_id"] for c in found["items"]]
    assert [c["customer_id"] for c in api.get("/customers", params={"q": f"hotel cust-{unique}"}).json()["items"]] \
        == [cid]                                                           # by name
    assert api.get("/customers", params={"q": "no-such-customer-" + unique}).json()["total"] == 0
