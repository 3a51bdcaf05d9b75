"""The scheduler on a database of its own: standing-order requests and timers through the real
inbox and handlers, the API in-process, and the ticker's own functions driven by the test on a
clock it moves freely (no other ticker interferes). RecurringOrderDue exactly once per occurrence,
whatever happens (customer changes, crashes, downtime, two replicas), and timers fired once at
their latest time. (Occurrences reaching the bus in order is tests/integration/test_scheduler.py.)"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from types import SimpleNamespace

import psycopg
import pytest

from runtime import db
from runtime.outbox import write_outbox
from runtime.uow import UnitOfWork
from schemas import StandingOrderRequested, TimerCancelled, TimerRequested, deterministic_id
from services.scheduler import commands, store, ticker
from services.scheduler.service import SERVICE
from tests.builders import DELIVERY, query
from tests.conftest import wait_until
from tests.harness import ServiceDB


# --- helpers ---------------------------------------------------------------------------------

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


@dataclass
class Private:
    """The scheduler's database of the test's own (a ServiceDB): no running ticker, a clock of its own."""
    sdb: ServiceDB

    @property
    def url(self) -> str:
        return self.sdb.url

    @property
    def pool(self):
        return self.sdb.pool

    @property
    def clock(self):
        return self.sdb.clock

    def uow(self, pool=None):
        return self.sdb.uow(pool)

    def create(self, so_id: str, start: date, **kw) -> None:
        with self.uow() as uow:
            self.sdb.call(SERVICE.handlers["StandingOrderRequested"],
                          requested(so_id, "c-private", start, self.clock.now(), **kw), uow)

    def state(self, so_id: str) -> dict:
        return query(self.url, "SELECT * FROM standing_orders WHERE standing_order_id = %s", (so_id,))[0]

    def emitted(self, so_id: str) -> list[int]:
        return [e["occurrence"] for e in outbox(self.url, "RecurringOrderDue", so_id)]

    def count(self, so_id: str) -> int:
        """How many RecurringOrderDue were emitted (cheap enough to poll while a ticker runs)."""
        return query(self.url, "SELECT count(*) AS n FROM outbox WHERE topic = 'RecurringOrderDue' AND key = %s",
                     (so_id,))[0]["n"]

    def drain(self, **bounds) -> int:
        total = 0
        while True:
            result = ticker.tick(self.uow, **bounds)
            total += result.occurrences
            if not result.more:
                return total


@pytest.fixture
def private(scheduler) -> Private:
    scheduler.clock.set(datetime(2026, 1, 10, 12, tzinfo=UTC))
    return Private(scheduler)


def expected(private: Private, so_id: str) -> list[int]:
    """Every occurrence due by the private clock's now, by recurrence.py alone."""
    with private.pool.connection() as conn:
        order = store.get(conn, so_id)
    return [n for n, _ in replace(order, last_occurrence=0).due(private.clock.now(), 100_000)]


# --- events and the API ------------------------------------------------------------------------

def test_standing_order_requested_is_created_once_and_bad_terms_are_dead_lettered(scheduler):
    customer, so_id, now = "cust-1", "so-1", scheduler.clock.now()
    event = requested(so_id, customer, now.date() + timedelta(days=1), now, every=2, unit="months",
                      tz="Europe/Warsaw")
    scheduler.deliver(event, event_id="ev-1")
    scheduler.deliver(event, event_id="ev-2")   # the same request again, under a new event id
    [dead] = scheduler.deliver(requested("so-bad-1", customer, now.date(), now, tz="Mars/Olympus_Mons"),
                               event_id="ev-bad")
    assert dead.topic == "StandingOrderRequested.DLQ"
    with scheduler.api("customer", customer) as client:
        assert client.get(f"/standing-orders/{so_id}").status_code == 200
        assert {e: scheduler.inbox_outcome(e) for e in ("ev-1", "ev-2", "ev-bad")} == {
            "ev-1": "handled", "ev-2": "handled", "ev-bad": "dead_lettered"}
        changes = outbox(scheduler.url, "StandingOrderChanged", so_id)
        assert [c["change"] for c in changes] == ["created"], "a repeated request announced the order twice"
        listed = client.get(f"/customers/{customer}/standing-orders").json()["items"]
    assert [o["standing_order_id"] for o in listed] == [so_id]
    assert listed[0]["next_occurrence"] == 1 and listed[0]["payment"] == {"mode": "account", "card_token": None}


def test_pause_resume_skip_change_and_cancel(private):
    h, customer = private.sdb, "cust-1"
    client, rep = h.api("customer", customer), h.api("salesperson", "rep-1")
    start = h.clock.now().date() + timedelta(days=1)
    created = client.post("/standing-orders", json=body(start), headers={"Idempotency-Key": "a-1"})
    assert created.status_code == 201, created.text
    so_id = created.json()["standing_order_id"]
    # A second weekly order on the same days shows the ticker has passed each instant.
    sentinel = client.post("/standing-orders", json=body(start),
                           headers={"Idempotency-Key": "b-1"}).json()["standing_order_id"]

    def placed(sid: str) -> list[int]:
        return [p["occurrence"] for p in client.get(f"/standing-orders/{sid}").json()["placed"]]

    assert client.post(f"/standing-orders/{so_id}/pause").json()["status"] == "paused"
    assert client.post(f"/standing-orders/{so_id}/pause").status_code == 200  # pausing twice changes nothing
    h.clock.advance(timedelta(days=2))  # occurrence 1 falls due while paused
    private.drain()
    assert placed(sentinel) == [1], "the sentinel's first occurrence"
    assert placed(so_id) == [], "a paused standing order emitted an occurrence"

    resumed = rep.post(f"/standing-orders/{so_id}/resume").json()  # a salesperson acting for the customer
    assert (resumed["status"], resumed["next_occurrence"]) == ("active", 2), "occurrence 1 should stay dropped"
    skipped = client.post(f"/standing-orders/{so_id}/skip-next").json()
    assert (skipped["skip_occurrences"], skipped["next_occurrence"]) == ([2], 3)
    changed = client.patch(f"/standing-orders/{so_id}", json={"lines": [{"sku": "BULB-LED-9W", "quantity": 7}]})
    assert changed.json()["lines"] == [{"sku": "BULB-LED-9W", "quantity": 7}]
    assert client.patch(f"/standing-orders/{so_id}", json={}).status_code == 422

    h.clock.advance(timedelta(days=14))  # past occurrence 2 (skipped) and 3
    private.drain()
    assert placed(so_id) == [3], "occurrence 3 (2 was skipped)"
    due = outbox(h.url, "RecurringOrderDue", so_id)
    assert [(d["occurrence"], d["lines"][0]["quantity"]) for d in due] == [(3, 7)]

    cancelled = client.post(f"/standing-orders/{so_id}/cancel").json()
    assert (cancelled["status"], cancelled["upcoming"]) == ("cancelled", [])
    assert client.post(f"/standing-orders/{so_id}/resume").status_code == 409
    h.clock.advance(timedelta(days=14))
    private.drain()
    assert 5 in placed(sentinel), "the sentinel's fifth occurrence"
    assert placed(so_id) == [3], "a cancelled standing order emitted again"
    assert [c["change"] for c in outbox(h.url, "StandingOrderChanged", so_id)] == [
        "created", "paused", "resumed", "skipped", "lines_changed", "cancelled"]
    assert outbox(h.url, "StandingOrderChanged", so_id)[2]["changed_by"] == "rep-1"
    client.close()
    rep.close()


def test_any_future_occurrence_is_skipped_by_its_date_once(scheduler):
    """Issue 16: only the next occurrence could be skipped. POST /skips takes any occurrence's
    local date; again it changes nothing; a date with no occurrence, or one already placed, is refused."""
    client = scheduler.api("customer", "cust-1")
    start = scheduler.clock.now().date() + timedelta(days=1)
    created = client.post("/standing-orders", json=body(start), headers={"Idempotency-Key": "k-1"})
    so_id = created.json()["standing_order_id"]
    third = (start + timedelta(weeks=2)).isoformat()
    skipped = client.post(f"/standing-orders/{so_id}/skips", json={"occurrence_date": third})
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["skip_occurrences"] == [3] and skipped.json()["next_occurrence"] == 1
    assert [u["occurrence"] for u in skipped.json()["upcoming"][:3]] == [1, 2, 4]
    again = client.post(f"/standing-orders/{so_id}/skips", json={"occurrence_date": third})
    assert again.status_code == 200 and again.json()["skip_occurrences"] == [3]
    off = client.post(f"/standing-orders/{so_id}/skips", json={"occurrence_date": (start + timedelta(days=1)).isoformat()})
    assert off.status_code == 409 and off.json()["type"] == "https://salesbus.dev/problems/not-an-occurrence", off.text
    assert client.post(f"/standing-orders/{so_id}/cancel").status_code == 200
    ended = client.post(f"/standing-orders/{so_id}/skips", json={"occurrence_date": third})
    assert ended.status_code == 409 and ended.headers["content-type"] == "application/problem+json"
    assert [c["change"] for c in outbox(scheduler.url, "StandingOrderChanged", so_id)] == [
        "created", "skipped", "cancelled"], "the repeated skip was announced again"
    client.close()


def test_timers_fire_once_cancelled_never_replaced_at_new_time(private):
    h, now = private.sdb, private.clock.now()
    t = {n: f"timer-{n}" for n in ("once", "cancelled", "replaced", "overtaken")}

    def request(name: str, fire_at: datetime) -> None:
        h.deliver(TimerRequested(timer_id=t[name], owner="crm", kind="reminder", fire_at=fire_at,
                                 payload={"task_id": name}))

    request("once", now + timedelta(hours=1))
    request("cancelled", now + timedelta(hours=1))
    h.deliver(TimerCancelled(timer_id=t["cancelled"], owner="crm"))
    request("replaced", now + timedelta(hours=1))
    request("replaced", now + timedelta(hours=3))
    # The cancel (decided later: its CloudEvent time) is consumed before its request: the cancel must still win.
    wall = datetime.now(UTC)
    h.deliver(TimerCancelled(timer_id=t["overtaken"], owner="crm"), event_id="c-1", source="crm", time=wall)
    h.deliver(TimerRequested(timer_id=t["overtaken"], owner="crm", kind="reminder", fire_at=now + timedelta(hours=1)),
              event_id="r-1", source="crm", time=wall - timedelta(seconds=5))

    timers = {r["timer_id"]: r for r in h.query("SELECT * FROM timers WHERE timer_id = ANY(%s)", (list(t.values()),))}
    assert len(timers) == 4 and timers[t["replaced"]]["fire_at"] == now + timedelta(hours=3)
    assert timers[t["cancelled"]]["status"] == "cancelled"

    def fired(name: str) -> list[dict]:
        return outbox(h.url, "TimerFired", t[name])

    private.clock.advance(timedelta(hours=2))
    private.drain()
    assert fired("once"), "the first timer fires"
    # Same transaction, ordered by time: had the old time of 'replaced' survived, it would have fired too.
    assert fired("replaced") == [] and fired("cancelled") == [] and fired("overtaken") == []
    private.clock.advance(timedelta(hours=2))
    private.drain()
    once, replaced = fired("once"), fired("replaced")
    assert len(once) == 1 and len(replaced) == 1, "the replaced timer fires at its new time"
    assert datetime.fromisoformat(replaced[0]["fire_at"]) == now + timedelta(hours=3)
    assert replaced[0]["id"] == deterministic_id("timer", t["replaced"], (now + timedelta(hours=3)).isoformat())
    assert once[0]["payload"] == {"task_id": "once"} and once[0]["owner"] == "crm"
    assert fired("cancelled") == [] and fired("overtaken") == []


def test_a_nul_in_a_delivery_or_an_id_is_refused_not_a_server_error(scheduler):
    """Found by the OpenAPI fuzzing (tests/integration/test_openapi_fuzz.py): PATCH with a NUL in the
    delivery's email answered 500 (PostgreSQL jsonb refuses \\u0000). Delivery fields are bounded
    lines and a real email address; ids in the path are bounded: 422 instead, nothing changed."""
    client = scheduler.api("customer", "cust-1")
    start = scheduler.clock.now().date() + timedelta(days=1)
    created = client.post("/standing-orders", json=body(start), headers={"Idempotency-Key": "n-1"})
    assert created.status_code == 201, created.text
    so_id = created.json()["standing_order_id"]
    for field, value in (("email", "buyer\x00@example.hr"), ("recipient", "Goods\x00in"), ("city", "x" * 101)):
        resp = client.patch(f"/standing-orders/{so_id}", json={"delivery": {**DELIVERY, field: value}})
        assert resp.status_code == 422, (field, resp.text)
    bad = client.post("/standing-orders", json={**body(start), "delivery": {**DELIVERY, "recipient": "a\x00b"}},
                      headers={"Idempotency-Key": "m-1"})
    assert bad.status_code == 422
    assert client.get(f"/standing-orders/{so_id}").json()["delivery"] == DELIVERY
    assert client.get("/standing-orders/so%00x").status_code == 422
    assert client.post("/standing-orders", json=body(start), headers={"Idempotency-Key": "a b"}).status_code == 422
    client.close()


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
    wait_until(lambda: private.count("so-restart") >= 5, timeout=30, interval=0.02)
    stopping.set()
    first.join(30)
    before = len(private.emitted("so-restart"))
    assert 5 <= before < total, "the first ticker finished before it could be stopped mid catch-up"

    stopping, second = start_ticker()
    try:
        wait_until(lambda: private.count("so-restart") >= total, timeout=60, interval=0.02,
                   message="the catch-up to finish")
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
            commands.apply_change(uow, order.pause(), "paused", "c-private")

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
        commands.apply_change(uow, order.resume(private.clock.now()), "resumed", "c-private")
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
        commands.apply_change(uow, order.cancel(), "cancelled", "c-private")
    private.clock.advance(timedelta(days=30))
    assert ticker.tick(private.uow).occurrences == 0
    assert private.emitted("so-pause-race") == [1]
    assert private.state("so-pause-race")["status"] == "cancelled"


# --- poison rows (issue 9): one schedule or timer failing for good must not stop the others ---

def test_a_schedule_or_timer_that_fails_for_good_is_set_aside_and_the_others_go_on(private):
    """Before: the first due row raising took the ticker (and the process) down; restarted, the
    same row came first again and no standing order of any customer was placed."""
    from runtime.containment import Stalls
    for so_id in ("so-a-bad-zone", "so-b-bad-lines", "so-good-1", "so-good-2"):   # the bad ones sort first
        private.create(so_id, date(2026, 1, 11))
    with psycopg.connect(private.url) as conn:
        # a zone that tzdata no longer has; lines a later contract no longer accepts
        conn.execute("UPDATE standing_orders SET time_zone = 'Mars/Olympus_Mons' WHERE standing_order_id = 'so-a-bad-zone'")
        conn.execute("""UPDATE standing_orders SET lines = '[{"sku": "BULB-LED-9W"}]'
                        WHERE standing_order_id = 'so-b-bad-lines'""")
        for timer_id, payload in (("t-bad", '"not an object"'), ("t-good", '{"task_id": "t-1"}')):
            conn.execute("""INSERT INTO timers (timer_id, owner, kind, fire_at, payload, status, changed_at)
                            VALUES (%s, 'crm', 'reminder', %s, %s::jsonb, 'pending', %s)""",
                         (timer_id, datetime(2026, 1, 10, 13, tzinfo=UTC), payload, datetime(2026, 1, 10, tzinfo=UTC)))
    private.clock.advance(timedelta(days=3))

    ctx = SimpleNamespace(stopping=threading.Event(), unit_of_work=private.uow, stalls=Stalls("scheduler"))
    worker = threading.Thread(target=ticker.make_worker(interval_s=0.05), args=(ctx,), daemon=True)
    worker.start()
    try:
        wait_until(lambda: private.emitted("so-good-1") == [1, 2, 3] and private.emitted("so-good-2") == [1, 2, 3],
                   timeout=30, message="the good standing orders to emit RecurringOrderDue")
        wait_until(lambda: outbox(private.url, "TimerFired", "t-good"), timeout=30, message="the good timer to fire")
        assert worker.is_alive(), "the ticker stopped"
    finally:
        ctx.stopping.set()
        worker.join(10)

    bad_zone, bad_lines = private.state("so-a-bad-zone"), private.state("so-b-bad-lines")
    assert bad_zone["status"] == bad_lines["status"] == "failed"
    assert bad_zone["failed_reason"].startswith("ZoneInfoNotFoundError") and bad_zone["failed_at"] is not None
    assert bad_lines["failed_reason"].startswith("ValidationError") and "quantity" in bad_lines["failed_reason"]
    assert bad_zone["last_occurrence"] == 0          # its progress is kept for a repair
    assert private.emitted("so-a-bad-zone") == private.emitted("so-b-bad-lines") == []
    # what the failed attempt emitted inside its savepoint was forgotten, not committed
    assert [c["change"] for c in outbox(private.url, "StandingOrderChanged", "so-a-bad-zone")] == ["created"]
    timers = {r["timer_id"]: r for r in query(private.url, "SELECT * FROM timers")}
    assert (timers["t-good"]["status"], timers["t-bad"]["status"]) == ("fired", "failed")
    assert timers["t-bad"]["failed_reason"].startswith("ValidationError")
    assert outbox(private.url, "TimerFired", "t-bad") == []
    listing = SERVICE.set_aside["failed standing orders"]
    assert {r["id"] for r in query(private.url, listing)} == {"so-a-bad-zone", "so-b-bad-lines"}
    assert [r["id"] for r in query(private.url, SERVICE.set_aside["failed timers"])] == ["t-bad"]
    assert ticker.tick(private.uow).occurrences == 0   # set aside for good: not taken again


def test_a_batch_whose_statement_fails_for_one_order_sets_only_that_order_aside(private):
    """The ticker writes a batch of due orders with one statement per table (bench/scale.py: 322 ->
    ~2,200 RecurringOrderDue/s). One order whose occurrence is already recorded (its schedule and
    its history disagree) makes that shared INSERT fail: the batch is rolled back to its savepoint
    and served again order by order, so only that order is set aside."""
    for so_id in ("so-dup", "so-ok-1", "so-ok-2"):
        private.create(so_id, date(2026, 1, 11))
    with psycopg.connect(private.url) as conn:
        conn.execute("""INSERT INTO occurrences (standing_order_id, occurrence, due_at, emitted_at, event_id)
                        VALUES ('so-dup', 1, now(), now(), 'an-earlier-run')""")
    private.clock.advance(timedelta(days=1))
    with private.uow() as uow:
        done = ticker.serve_due(uow, [], limit=10)
    assert sorted(done) == [("so-dup", 0), ("so-ok-1", 1), ("so-ok-2", 1)]
    assert private.emitted("so-ok-1") == private.emitted("so-ok-2") == [1]
    assert private.emitted("so-dup") == []
    dup = private.state("so-dup")
    assert dup["status"] == "failed" and dup["failed_reason"].startswith("UniqueViolation")
    assert [private.state(s)["last_occurrence"] for s in ("so-ok-1", "so-ok-2")] == [1, 1]
