"""The scheduler on the real broker: what only the running service shows, a standing order made
through the API whose occurrences the service's own ticker emits as the shared clock moves, and
which reach the bus once each and in order. Everything else about the scheduler (requests,
changes, timers, the ticker under crashes, downtime and races) is tested on the handler tier
(tests/handlers/test_scheduler.py)."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from runtime.tap import tap
from schemas import deterministic_id
from services.scheduler.recurrence import Recurrence
from tests.conftest import wait_until
from tests.handlers.test_scheduler import body, outbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scheduler(harness, cfg):
    harness.start("scheduler")
    return SimpleNamespace(harness=harness, clock=harness.clock, url=cfg.database_for("scheduler"))


# --- through the real service ----------------------------------------------------------------

def test_bimonthly_order_via_api_yields_six_occurrences_in_a_year(scheduler, unique):
    h, customer = scheduler.harness, f"cust-{unique}"
    client = h.client("scheduler", "customer", customer)
    start = h.clock.now().date() + timedelta(days=1)
    req = body(start, every=2, unit="months", tz="Europe/Warsaw")
    first = client.post("/standing-orders", json=req, headers={"Idempotency-Key": f"k-{unique}"})
    assert first.status_code == 201, first.text
    so_id = first.json()["standing_order_id"]
    again = client.post("/standing-orders", json=req, headers={"Idempotency-Key": f"k-{unique}"})
    assert (again.status_code, again.json()["standing_order_id"]) == (200, so_id), "a retried POST made a second order"
    upcoming = first.json()["upcoming"]
    assert [u["occurrence"] for u in upcoming] == [1, 2, 3, 4, 5, 6]
    assert [u["local_date"][5:7] for u in upcoming[:2]] == [f"{start.month:02}", f"{(start.month + 1) % 12 + 1:02}"]

    stranger = h.client("scheduler", "customer", f"other-{unique}")
    assert stranger.get(f"/standing-orders/{so_id}").status_code == 404
    assert stranger.post("/standing-orders", json={**req, "customer_id": customer},
                         headers={"Idempotency-Key": f"s-{unique}"}).status_code == 403
    # another customer's list is absent, like another customer's order (one owner-or-404 rule)
    assert stranger.get(f"/customers/{customer}/standing-orders").status_code == 404
    assert client.post("/standing-orders", json=req).status_code == 422, "the Idempotency-Key is required"
    past = client.post("/standing-orders", json=body(start - timedelta(days=3)), headers={"Idempotency-Key": f"p-{unique}"})
    # schema-valid but refused by a rule: 409 refused (422 is only for a request breaking its schema)
    assert past.status_code == 409 and past.json()["type"].endswith("/refused"), past.text
    assert so_id.startswith("so-") and len(so_id) == 35, so_id

    # Twelve months on: an hour before occurrence 7 (start + 12 months) is due.
    seventh = Recurrence(start, 2, "months", "Europe/Warsaw").occurrence_at(7)
    h.clock.advance(seventh - timedelta(hours=1) - h.clock.now())
    wait_until(lambda: len(outbox(scheduler.url, "RecurringOrderDue", so_id)) >= 6, timeout=60,
               message="six occurrences emitted")
    wait_until(lambda: all(e["published"] for e in outbox(scheduler.url, "RecurringOrderDue", so_id)), timeout=60,
               message="the occurrences published")

    by_id: dict[str, int] = {}  # a relay republish repeats an id; consumers drop it, so do we
    for rec in tap(h.cfg.kafka_common(), ["RecurringOrderDue"], follow=False, keys={so_id}):
        by_id.setdefault(rec.headers["ce_id"], rec.event()["data"]["occurrence"])
    assert list(by_id.values()) == [1, 2, 3, 4, 5, 6], "occurrences missing, doubled or out of order on the bus"
    assert by_id == {deterministic_id(so_id, n): n for n in range(1, 7)}
    view = client.get(f"/standing-orders/{so_id}").json()
    assert [p["occurrence"] for p in view["placed"]] == [1, 2, 3, 4, 5, 6]
    assert (view["status"], view["next_occurrence"]) == ("active", 7)
    listed = h.client("scheduler", "salesperson", "rep-1").get(f"/customers/{customer}/standing-orders").json()
    assert [o["standing_order_id"] for o in listed["items"]] == [so_id] and listed["total"] == 1
