"""The scheduler's promise: RecurringOrderDue exactly once per occurrence, whatever happens
(customer changes, crashes, downtime, two replicas), and timers fired once at their latest time.

API and event tests run the real service (harness). Ticker tests run the ticker's own
functions against a private database, so no other ticker interferes and a clock of their own
can be moved freely.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from types import SimpleNamespace

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from runtime import db
from runtime.clock import OffsetClock
from runtime.config import with_dbname
from runtime.outbox import write_outbox
from runtime.tap import tap
from runtime.uow import UnitOfWork, unit_of_work
from schemas import (StandingOrderRequested, TimerCancelled, TimerRequested, deterministic_id, envelope,
                     to_record)
from services.scheduler import handlers, store, ticker
from services.scheduler.recurrence import Recurrence
from services.scheduler.service import SERVICE
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

DELIVERY = {"recipient": "Facilities", "address_lines": ["Ul. Prosta 1"], "city": "Warszawa",
            "postal_code": "00-850", "country": "PL", "phone": "+48 22 000 00 00", "email": "buyer@example.pl"}


# --- helpers ---------------------------------------------------------------------------------

def query(url: str, sql: str, params=()) -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def outbox(url: str, topic: str, key: str) -> list[dict]:
    """Events emitted for a key, in emission order (the relay publishes in this order)."""
    rows = query(url, "SELECT event_id, value, published_at FROM outbox WHERE topic = %s AND key = %s ORDER BY id",
                 (topic, key))
    return [{"id": r["event_id"], "published": r["published_at"] is not None, **json.loads(bytes(r["value"]))["data"]}
            for r in rows]


def body(start: date, *, every: int = 1, unit: str = "weeks", tz: str = "UTC", **kw) -> dict:
    return {"lines": [{"sku": "BULB-LED-9W", "quantity": 1000}], "delivery": DELIVERY, "payment": {"mode": "account"},
            "interval": {"every": every, "unit": unit}, "start_date": start.isoformat(), "time_zone": tz, **kw}


def requested(so_id: str, customer_id: str, start: date, now: datetime, *, every: int = 1, unit: str = "days",
              tz: str = "UTC", **kw) -> StandingOrderRequested:
    return StandingOrderRequested.model_validate({
        **body(start, every=every, unit=unit, tz=tz, **kw), "standing_order_id": so_id, "customer_id": customer_id,
        "requested_at": now})


@pytest.fixture(scope="module")
def scheduler(harness, cfg):
    harness.start("scheduler")
    return SimpleNamespace(harness=harness, clock=harness.clock, url=cfg.database_for("scheduler"))


@dataclass
class Private:
    """A scheduler database of the test's own: no running ticker, a clock of its own."""
    url: str
    pool: ConnectionPool
    clock: OffsetClock

    def uow(self, pool: ConnectionPool | None = None):
        return unit_of_work(pool or self.pool, source="scheduler", clock=self.clock)

    def create(self, so_id: str, start: date, **kw) -> None:
        with self.uow() as uow:
            handlers.handle_standing_order_requested(requested(so_id, "c-private", start, self.clock.now(), **kw), uow)

    def state(self, so_id: str) -> dict:
        return query(self.url, "SELECT * FROM standing_orders WHERE standing_order_id = %s", (so_id,))[0]

    def emitted(self, so_id: str) -> list[int]:
        return [e["occurrence"] for e in outbox(self.url, "RecurringOrderDue", so_id)]

    def drain(self, **bounds) -> int:
        total = 0
        while True:
            result = ticker.tick(self.uow, **bounds)
            total += result.occurrences
            if not result.more:
                return total


@pytest.fixture
def private(cfg, unique):
    name = f"scheduler_t_{unique}"
    url = with_dbname(cfg.database_url, name)
    db.migrate(url, SERVICE.migrations)
    pool = db.make_pool(url, max_size=4, name=name)
    pool.wait(30)
    clock = OffsetClock()
    clock.set(datetime(2026, 1, 10, 12, tzinfo=UTC))
    yield Private(url, pool, clock)
    pool.close()
    with psycopg.connect(with_dbname(cfg.database_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def expected(private: Private, so_id: str) -> list[int]:
    """Every occurrence due by the private clock's now, by recurrence.py alone."""
    with private.pool.connection() as conn:
        order = store.get(conn, so_id)
    return [n for n, _ in replace(order, last_occurrence=0).due(private.clock.now(), 100_000)]


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
    assert stranger.post("/standing-orders", json={**req, "customer_id": customer}).status_code == 403
    assert stranger.get(f"/customers/{customer}/standing-orders").status_code == 403
    past = client.post("/standing-orders", json=body(start - timedelta(days=3)))
    assert past.status_code == 422

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
    assert [o["standing_order_id"] for o in listed["standing_orders"]] == [so_id]


def test_standing_order_requested_is_created_once_and_bad_terms_are_dead_lettered(scheduler, bus, unique):
    h, customer, so_id = scheduler.harness, f"cust-{unique}", f"so-{unique}"
    now = h.clock.now()
    event = requested(so_id, customer, now.date() + timedelta(days=1), now, every=2, unit="months",
                      tz="Europe/Warsaw")
    ids = [bus.publish(event), bus.publish(event)]  # the same request again, under a new event id
    bad_id = bus.publish(requested(f"so-bad-{unique}", customer, now.date(), now, tz="Mars/Olympus_Mons"))
    client = h.client("scheduler", "customer", customer)
    wait_until(lambda: client.get(f"/standing-orders/{so_id}").status_code == 200, timeout=60,
               message="the standing order to be created from the event")
    def outcomes() -> dict[str, str]:
        return {r["event_id"]: r["outcome"] for r in query(
            scheduler.url, "SELECT event_id, outcome FROM inbox WHERE event_id = ANY(%s)", ([*ids, bad_id],))}
    wait_until(lambda: len(outcomes()) == 3, timeout=60, message="all three requests consumed")
    assert outcomes() == {ids[0]: "handled", ids[1]: "handled", bad_id: "dead_lettered"}
    changes = outbox(scheduler.url, "StandingOrderChanged", so_id)
    assert [c["change"] for c in changes] == ["created"], "a repeated request announced the order twice"
    listed = client.get(f"/customers/{customer}/standing-orders").json()["standing_orders"]
    assert [o["standing_order_id"] for o in listed] == [so_id]
    assert listed[0]["next_occurrence"] == 1 and listed[0]["payment"] == {"mode": "account"}


def test_pause_resume_skip_change_and_cancel(scheduler, unique):
    h, customer = scheduler.harness, f"cust-{unique}"
    client = h.client("scheduler", "customer", customer)
    rep = h.client("scheduler", "salesperson", f"rep-{unique}")
    start = h.clock.now().date() + timedelta(days=1)
    created = client.post("/standing-orders", json=body(start))
    assert created.status_code == 201, created.text
    so_id = created.json()["standing_order_id"]
    # A second weekly order on the same days shows the ticker has passed each instant.
    sentinel = client.post("/standing-orders", json=body(start)).json()["standing_order_id"]

    def placed(sid: str) -> list[int]:
        return [p["occurrence"] for p in client.get(f"/standing-orders/{sid}").json()["placed"]]

    assert client.post(f"/standing-orders/{so_id}/pause").json()["status"] == "paused"
    assert client.post(f"/standing-orders/{so_id}/pause").status_code == 200  # pausing twice changes nothing
    h.clock.advance(timedelta(days=2))  # occurrence 1 falls due while paused
    wait_until(lambda: placed(sentinel) == [1], timeout=60, message="the sentinel's first occurrence")
    assert placed(so_id) == [], "a paused standing order emitted an occurrence"

    resumed = rep.post(f"/standing-orders/{so_id}/resume").json()  # a salesperson acting for the customer
    assert (resumed["status"], resumed["next_occurrence"]) == ("active", 2), "occurrence 1 should stay dropped"
    skipped = client.post(f"/standing-orders/{so_id}/skip-next").json()
    assert (skipped["skip_occurrences"], skipped["next_occurrence"]) == ([2], 3)
    changed = client.patch(f"/standing-orders/{so_id}", json={"lines": [{"sku": "BULB-LED-9W", "quantity": 7}]})
    assert changed.json()["lines"] == [{"sku": "BULB-LED-9W", "quantity": 7}]
    assert client.patch(f"/standing-orders/{so_id}", json={}).status_code == 422

    h.clock.advance(timedelta(days=14))  # past occurrence 2 (skipped) and 3
    wait_until(lambda: placed(so_id) == [3], timeout=60, message="occurrence 3 (2 was skipped)")
    due = outbox(scheduler.url, "RecurringOrderDue", so_id)
    assert [(d["occurrence"], d["lines"][0]["quantity"]) for d in due] == [(3, 7)]

    cancelled = client.post(f"/standing-orders/{so_id}/cancel").json()
    assert (cancelled["status"], cancelled["upcoming"]) == ("cancelled", [])
    assert client.post(f"/standing-orders/{so_id}/resume").status_code == 409
    h.clock.advance(timedelta(days=14))
    wait_until(lambda: 5 in placed(sentinel), timeout=60, message="the sentinel's fifth occurrence")
    assert placed(so_id) == [3], "a cancelled standing order emitted again"
    assert [c["change"] for c in outbox(scheduler.url, "StandingOrderChanged", so_id)] == [
        "created", "paused", "resumed", "skipped", "lines_changed", "cancelled"]
    assert outbox(scheduler.url, "StandingOrderChanged", so_id)[2]["changed_by"] == f"rep-{unique}"


def publish_at(bus, event, at: datetime, event_id: str) -> None:
    """Publish with a chosen CloudEvent time (the producer's moment of decision)."""
    key, value, headers = to_record(envelope(event, source="crm", event_id=event_id, time=at))
    bus.publish_raw(event.event_type(), value, key=key, headers=headers)


def test_timers_fire_once_cancelled_never_replaced_at_new_time(scheduler, bus, unique):
    h, now = scheduler.harness, scheduler.clock.now()
    t = {n: f"timer-{n}-{unique}" for n in ("once", "cancelled", "replaced", "overtaken")}

    def request(name: str, fire_at: datetime) -> str:
        return bus.publish(TimerRequested(timer_id=t[name], owner="crm", kind="reminder", fire_at=fire_at,
                                          payload={"task_id": name}))

    request("once", now + timedelta(hours=1))
    request("cancelled", now + timedelta(hours=1))
    bus.publish(TimerCancelled(timer_id=t["cancelled"], owner="crm"))
    request("replaced", now + timedelta(hours=1))
    request("replaced", now + timedelta(hours=3))
    # The cancel (decided later) is consumed before its request: the cancel must still win.
    wall = datetime.now(UTC)
    publish_at(bus, TimerCancelled(timer_id=t["overtaken"], owner="crm"), wall, f"c-{unique}")
    wait_until(lambda: query(scheduler.url, "SELECT 1 FROM inbox WHERE event_id = %s", (f"c-{unique}",)), timeout=60,
               message="the cancel to be consumed first")
    publish_at(bus, TimerRequested(timer_id=t["overtaken"], owner="crm", kind="reminder",
                                   fire_at=now + timedelta(hours=1)), wall - timedelta(seconds=5), f"r-{unique}")

    def timers() -> dict:
        return {r["timer_id"]: r for r in query(scheduler.url, "SELECT * FROM timers WHERE timer_id = ANY(%s)",
                                                (list(t.values()),))}
    wait_until(lambda: query(scheduler.url, "SELECT 1 FROM inbox WHERE event_id = %s", (f"r-{unique}",))
               and len(timers()) == 4 and timers()[t["replaced"]]["fire_at"] == now + timedelta(hours=3)
               and timers()[t["cancelled"]]["status"] == "cancelled", timeout=60, message="the timer requests")

    def fired(name: str) -> list[dict]:
        return outbox(scheduler.url, "TimerFired", t[name])

    scheduler.clock.advance(timedelta(hours=2))
    wait_until(lambda: fired("once"), timeout=60, message="the first timer to fire")
    # Same transaction, ordered by time: had the old time of 'replaced' survived, it would have fired too.
    assert fired("replaced") == [] and fired("cancelled") == [] and fired("overtaken") == []
    scheduler.clock.advance(timedelta(hours=2))
    wait_until(lambda: fired("replaced"), timeout=60, message="the replaced timer at its new time")
    once, replaced = fired("once"), fired("replaced")
    assert len(once) == 1 and len(replaced) == 1
    assert datetime.fromisoformat(replaced[0]["fire_at"]) == now + timedelta(hours=3)
    assert replaced[0]["id"] == deterministic_id("timer", t["replaced"], (now + timedelta(hours=3)).isoformat())
    assert once[0]["payload"] == {"task_id": "once"} and once[0]["owner"] == "crm"
    assert fired("cancelled") == [] and fired("overtaken") == []


# --- the ticker against a database of its own ------------------------------------------------

def test_catch_up_after_downtime_emits_every_missed_occurrence_once_in_order(private):
    private.create("so-daily", date(2026, 1, 11))
    private.create("so-monthly", date(2026, 3, 11), unit="months")  # due long after the daily backlog starts
    private.create("so-ending", date(2026, 1, 11), unit="weeks", max_occurrences=3)
    private.clock.advance(timedelta(days=100))  # the scheduler was down all that time

    first = ticker.tick(private.uow, per_schedule=12)
    assert first.more, "a 100-day backlog should take more than one bounded tick"
    assert private.emitted("so-daily") == list(range(1, 13))
    assert private.emitted("so-monthly") == [1, 2], "the daily backlog starved the monthly order"
    private.drain(per_schedule=12)

    assert private.emitted("so-daily") == expected(private, "so-daily") == list(range(1, 101))
    assert private.emitted("so-monthly") == [1, 2]
    assert private.emitted("so-ending") == [1, 2, 3]
    ending = private.state("so-ending")
    assert (ending["status"], ending["next_due_at"]) == ("ended", None)
    assert [c["change"] for c in outbox(private.url, "StandingOrderChanged", "so-ending")] == ["created", "ended"]
    daily = private.state("so-daily")
    assert (daily["last_occurrence"], daily["next_occurrence"]) == (100, 101)
    assert daily["next_due_at"] > private.clock.now()
    assert ticker.tick(private.uow).occurrences == 0


def test_a_crash_before_commit_loses_nothing_and_doubles_nothing(private):
    private.create("so-crash", date(2026, 1, 11))
    private.clock.advance(timedelta(days=5))

    class Crash(Exception):
        pass

    with pytest.raises(Crash):  # the process dies after emitting, before the commit
        with private.pool.connection() as conn, conn.transaction():
            uow = UnitOfWork(conn, source="scheduler", clock=private.clock)
            assert ticker.emit_due_occurrences(uow, []) == ("so-crash", 5)
            write_outbox(conn, uow.emitted)
            raise Crash
    assert private.emitted("so-crash") == [] and private.state("so-crash")["last_occurrence"] == 0

    assert private.drain() == 5
    assert private.emitted("so-crash") == [1, 2, 3, 4, 5]
    assert private.drain() == 0


def test_stopping_mid_catch_up_and_starting_a_new_ticker_misses_and_doubles_nothing(private):
    private.clock.set(datetime(2024, 1, 10, 12, tzinfo=UTC))
    private.create("so-restart", date(2024, 1, 11))
    private.clock.set(datetime(2026, 1, 10, 12, tzinfo=UTC))  # two years of daily occurrences to catch up
    total = len(expected(private, "so-restart"))
    failures: list[BaseException] = []

    def start_ticker() -> tuple[threading.Event, threading.Thread]:
        """The service's worker loop, one occurrence per transaction so the catch-up can be interrupted."""
        ctx = SimpleNamespace(stopping=threading.Event(), unit_of_work=private.uow)
        work = ticker.make_worker(interval_s=0.05, per_schedule=1)

        def guarded() -> None:
            try:
                work(ctx)
            except BaseException as exc:  # the test reports it
                failures.append(exc)
        th = threading.Thread(target=guarded, daemon=True)
        th.start()
        return ctx.stopping, th

    stopping, first = start_ticker()
    wait_until(lambda: len(private.emitted("so-restart")) >= 5, timeout=30, interval=0.02)
    stopping.set()
    first.join(30)
    before = len(private.emitted("so-restart"))
    assert 5 <= before < total, "the first ticker finished before it could be stopped mid catch-up"

    stopping, second = start_ticker()
    try:
        wait_until(lambda: len(private.emitted("so-restart")) >= total, timeout=60, message="the catch-up to finish")
    finally:
        stopping.set()
        second.join(30)
    assert not failures, failures
    assert private.emitted("so-restart") == list(range(1, total + 1))
    assert query(private.url, "SELECT count(*) AS n FROM occurrences")[0]["n"] == total


def test_two_tickers_at_once_emit_each_occurrence_exactly_once(private):
    orders = [f"so-race-{i}" for i in range(8)]
    for so_id in orders:
        private.create(so_id, date(2026, 1, 11))
    pools = [db.make_pool(private.url, max_size=1, name=f"replica-{i}") for i in range(2)]
    counts, failures, done = [0, 0], [], threading.Event()

    def replica(i: int) -> None:
        try:
            while not done.is_set():
                counts[i] += ticker.tick(partial(private.uow, pools[i]), per_schedule=2).occurrences
            counts[i] += ticker.tick(partial(private.uow, pools[i]), per_schedule=2).occurrences
        except BaseException as exc:  # the test reports it
            failures.append(exc)

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    try:
        for _ in range(40):  # time moves while both replicas tick
            private.clock.advance(timedelta(days=1))
            threading.Event().wait(0.02)
    finally:
        done.set()
        for th in threads:
            th.join(60)
        for p in pools:
            p.close()
    assert not failures, failures
    leftover = private.drain()
    want = {so_id: expected(private, so_id) for so_id in orders}
    assert all(want.values())
    assert {so_id: private.emitted(so_id) for so_id in orders} == want
    assert sum(counts) + leftover == sum(len(v) for v in want.values()), "an occurrence was emitted twice"
    assert min(counts) > 0, "one replica did all the work: the race was not exercised"


def test_pause_racing_a_due_occurrence_first_commit_wins(private):
    private.create("so-pause-race", date(2026, 1, 11))
    private.clock.advance(timedelta(days=1))

    def pause() -> None:
        with private.uow() as uow:
            order = store.get(uow.conn, "so-pause-race", lock=True)
            handlers.apply_change(uow, order.pause(), "paused", "c-private")

    # The ticker holds the row: the pause waits for it, then applies after the emission.
    with private.uow() as uow:
        assert ticker.emit_due_occurrences(uow, []) == ("so-pause-race", 1)
        waiting = threading.Thread(target=pause)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive(), "the pause did not wait for the ticker's row lock"
    waiting.join(30)
    assert private.state("so-pause-race")["status"] == "paused"
    assert private.emitted("so-pause-race") == [1]

    # The customer holds the row while the occurrence is due: the ticker skips it (never waits),
    # the customer's cancel commits first, and the occurrence is never emitted.
    with private.uow() as uow:
        order = store.get(uow.conn, "so-pause-race", lock=True)
        handlers.apply_change(uow, order.resume(private.clock.now()), "resumed", "c-private")
    private.clock.advance(timedelta(days=1))
    assert private.state("so-pause-race")["next_due_at"] <= private.clock.now()
    with private.uow() as uow:
        order = store.get(uow.conn, "so-pause-race", lock=True)
        results: list = []
        th = threading.Thread(target=lambda: results.append(ticker.tick(private.uow)))
        th.start()
        th.join(30)
        assert not th.is_alive(), "the ticker waited for the customer's row lock"
        assert results[0].occurrences == 0
        handlers.apply_change(uow, order.cancel(), "cancelled", "c-private")
    private.clock.advance(timedelta(days=30))
    assert ticker.tick(private.uow).occurrences == 0
    assert private.emitted("so-pause-race") == [1]
    assert private.state("so-pause-race")["status"] == "cancelled"
