"""GET /ops/set-aside, which every service API made by make_app(ctx=...) has: the service's own
set-aside listings (runtime/set_aside.py) over HTTP, for operators only, without leaving the
service's own connections read-only."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import psycopg
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def orders(harness):
    harness.start("orders")
    return harness


def given_up_record(database_url: str, reason: str) -> str:
    """A record the retry worker gave up on, as it leaves one (terminal: no worker takes it again)."""
    event_id = f"aside-{uuid.uuid4().hex}"
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO retry_records (source, event_id, group_key, topic, partition, \"offset\", state, "
                     "attempts, last_error, resolved_at) VALUES ('orders', %s, %s, 'OrderPlaced', 0, 0, "
                     "'dead_lettered', 7, %s, %s)", (event_id, event_id, reason, datetime.now(timezone.utc)))
    return event_id


def test_a_record_given_up_after_retries_is_listed_with_its_reason(orders):
    reason = f"ValueError: <b>no such product</b> {uuid.uuid4().hex[:6]}"
    event_id = given_up_record(orders.procs["orders"].database_url, reason)
    with orders.client("orders", "operator", "aside-op") as op:
        response = op.get("/ops/set-aside")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["service"] == "orders" and body["unavailable"] is None
    listings = {listing["name"]: listing for listing in body["listings"]}
    # the runtime's four (parked events: one mechanism for every service), then the service's own
    assert {"records retrying", "records given up after retries", "outbox rows the broker refused",
            "expired parked events", "orders the simulated distribution centre could not ship"} <= set(listings)
    assert listings["expired parked events"]["origin"] == "runtime"
    given_up = listings["records given up after retries"]
    assert given_up["origin"] == "runtime" and given_up["unavailable"] is None
    assert given_up["count"] == len(given_up["rows"]) >= 1
    row = next(r for r in given_up["rows"] if r["id"] == event_id)
    assert row["reason"] == reason
    assert row["extra"] == {"topic": "OrderPlaced", "attempts": 7}
    assert datetime.fromisoformat(row["at"]).tzinfo is not None


def test_only_operators_may_list_and_the_service_pool_stays_writable(orders):
    for role in ("customer", "warehouse", "salesperson"):
        with orders.client("orders", role, f"aside-{role}") as other:
            response = other.get("/ops/set-aside")
        assert response.status_code == 403, (role, response.text)
        assert "operator" in response.json()["detail"]
    import httpx
    assert httpx.get(f"{orders.urls['orders']}/ops/set-aside", timeout=30).status_code == 401
    with orders.client("orders", "operator", "aside-op") as op:
        for _ in range(3):
            assert op.get("/ops/set-aside").status_code == 200
    # the listing's read-only session is a connection of its own: every pooled one still writes
    from contextlib import ExitStack
    proc = orders.procs["orders"]
    with ExitStack() as held:
        conns = [held.enter_context(proc.pool.connection()) for _ in range(proc.pool.get_stats()["pool_size"])]
        for conn in conns:
            assert conn.execute("SHOW default_transaction_read_only").fetchone()["default_transaction_read_only"] \
                == "off"

def test_every_service_api_has_the_endpoint_in_its_openapi():
    # make_app(ctx=ctx) adds it: a service API built without the context would not have it
    import threading
    from pathlib import Path

    from runtime.clock import clock_from_env
    from runtime.config import Settings
    from runtime.service import ServiceContext, load_service
    names = [p.parent.name for p in (Path(__file__).resolve().parents[2] / "services").glob("*/service.py")]
    apis = [load_service(n) for n in names if load_service(n).http_app is not None and n != "web"]
    assert len(apis) >= 5
    for svc in apis:
        ctx = ServiceContext(svc, Settings(), None, clock_from_env(), threading.Event())
        operation = svc.http_app(ctx).openapi()["paths"]["/ops/set-aside"]["get"]
        assert {"200", "401", "403"} <= set(operation["responses"]), svc.name
        assert operation["security"][0] and "operator" in next(iter(operation["security"][0].values()))


def test_notifications_lists_a_failed_email_with_its_reason(harness):
    # notifications' API has only this endpoint: the web console gets its failed emails this way
    harness.start("notifications")
    email_id, now = f"aside-mail-{uuid.uuid4().hex[:10]}", datetime.now(timezone.utc)
    reason = "SMTP 550 5.1.1 <buyer@example.hr>: mailbox unavailable"
    with psycopg.connect(harness.procs["notifications"].database_url) as conn:  # as the sender sets one aside
        conn.execute("INSERT INTO notifications (notification_id, kind, order_id, customer_id, recipient, language, "
                     "subject, body_text, body_html, status, attempts, last_error, queued_at, failed_at) VALUES "
                     "(%s, 'order_confirmed', %s, 'c-aside', 'buyer@example.hr', 'hr', 's', 't', '<p>t</p>', "
                     "'failed', 3, %s, %s, %s)", (email_id, email_id, reason, now, now))
    with harness.client("notifications", "operator", "aside-op") as op:
        body = op.get("/ops/set-aside").json()
    with harness.client("notifications", "customer", "c-aside") as customer:
        assert customer.get("/ops/set-aside").status_code == 403
    failed = next(listing for listing in body["listings"] if listing["name"] == "failed emails")
    row = next(r for r in failed["rows"] if r["id"] == email_id)
    assert row["reason"] == reason and row["extra"]["recipient"] == "buyer@example.hr" and row["extra"]["attempts"] == 3
