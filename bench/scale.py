"""Benchmark (not a test), issue 11's scale figures, each section on an embedded stack of its own:

  1. scheduler: N standing orders (written as the scheduler's store writes them) all fall due at
     once when business time moves past their first occurrence: RecurringOrderDue/s on the topic
     (and as committed to the scheduler's outbox), and OrderPlaced/s as orders places them;
  2. inbox   : records/s through one service's consumer (the runtime's batch path, a handler
     writing one row and emitting one event, as bench/runtime_bench.py) with an empty inbox, with
     M rows in it, and empty again: the slowdown a full inbox costs;
  3. crm     : C customers and L timeline (contact log) entries bulk-loaded into crm's database:
     p50/p99 latency of a salesperson's "due today" tasks and of a customer's timeline through
     the crm service's HTTP API (its own process), and of the same store calls alone.

Each section prints its figure, the target and whether it is met; every figure goes to
.salesbus/scale.json with the machine (bench/measure.py). A figure that cannot be measured
honestly here is printed as "not measured: <why>".

    .venv/bin/python bench/scale.py [--quick] [--only scheduler|inbox|crm] [--standing-orders N]
                                    [--inbox-rows M] [--customers C] [--contacts L] ...
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measure import load_average, machine, percentile  # noqa: E402
from runtime import db  # noqa: E402
from runtime.auth import issue_key  # noqa: E402
from runtime.clock import FileClock, WallClock  # noqa: E402
from runtime.config import Settings, with_dbname  # noqa: E402
from runtime.embedded import EmbeddedStack  # noqa: E402
from runtime.service import Service, ServiceProcess  # noqa: E402
from runtime.supervisor import Supervisor  # noqa: E402
from runtime.topics import ensure_topics  # noqa: E402
from schemas import OrderCancelled, OrderPlaced, ProductChanged, envelope, to_record  # noqa: E402
from schemas.events.scheduling import Interval  # noqa: E402
from schemas.types import Delivery, Payment, StandingLine  # noqa: E402
from services.crm import commands as crm_commands, store as crm_store, task_store, tasks as crm_tasks  # noqa: E402
from services.crm.service import SERVICE as CRM  # noqa: E402
from services.scheduler import store as scheduler_store  # noqa: E402
from services.scheduler.standing import StandingOrder  # noqa: E402
from services.scheduler.ticker import SCHEDULES_PER_TRANSACTION  # noqa: E402

TARGET_DUE_PER_S = 5000      # RecurringOrderDue/s with every standing order due at once
TARGET_INBOX_SLOWDOWN = 0.10  # a full inbox costs the consumer at most 10% of its rate
TARGET_CRM_P99_MS = 50.0

SKU = "BULB-LED-9W"
DELIVERY = {"recipient": "Goods in", "address_lines": ["Industrial zone 4"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 555", "email": "scale@example.hr"}


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def rate(n: int, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds and seconds > 0 else None


# --- the stack ---------------------------------------------------------------------------------

@contextmanager
def embedded_stack(tag: str):
    """A fresh stack per section: one section's tables, topics and load never reach another's
    figures. Its data dir (several GB after the inbox fill) is removed once it has stopped."""
    stack = EmbeddedStack(Path(tempfile.mkdtemp(prefix=f"salesbus-scale-{tag}-"))).start()
    keep = False
    try:
        ensure_topics({"bootstrap.servers": stack.broker.bootstrap})
        yield stack
    except BaseException:
        keep = True   # the services' logs say what went wrong
        print(f"  ({tag}: stack data and logs kept in {stack.data_dir})", flush=True)
        raise
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(stack.data_dir, ignore_errors=True)


@contextmanager
def services(stack: EmbeddedStack, names: tuple[str, ...], extra_env: dict[str, str] | None = None):
    """The services as `salesbus up` runs them (a process each); yields the supervisor once all
    answer /readyz (their migrations applied, consumers started)."""
    keys = api_keys(stack)
    sup = Supervisor(stack, services=names, extra_env={"SALESBUS_API_KEYS_FILE": str(keys), **(extra_env or {})})
    sup.start()
    try:
        wait_ready(sup, names)
        yield sup
    finally:
        sup.stop()


def api_keys(stack: EmbeddedStack) -> Path:
    keys = stack.data_dir / "api_keys.json"
    if not keys.exists():
        keys.write_text("{}")
    return keys


def wait_ready(sup: Supervisor, names, timeout: float = 120) -> None:
    pending, deadline = set(names), time.time() + timeout
    while pending and time.time() < deadline:
        for name in list(pending):
            child = sup.children[name]
            if child.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {child.proc.returncode} (log: {child.log_path})")
            try:
                if httpx.get(f"http://127.0.0.1:{sup.port(name, 'metrics')}/readyz", timeout=2).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    if pending:
        raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")


def wait_until(check, timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stack_settings(stack: EmbeddedStack) -> Settings:
    """What a service process of this stack reads from its environment (Tansu's client settings
    included: 3 partitions, a 6 s session so the group join is quick)."""
    return Settings(**{k.removeprefix("SALESBUS_").lower(): v for k, v in stack.env().items()})


class Tail:
    """Group-less readers of topics from their current end (assigned partitions): arrival time
    of each key, first arrival kept (a relay republish is the same event)."""

    def __init__(self, bootstrap: str, topics: list[str]):
        self.seen: dict[str, dict[str, float]] = {t: {} for t in topics}
        self.stop_flag = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scale-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        parts = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                parts.append(TopicPartition(topic, p, high))
        self.consumer.assign(parts)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            for m in self.consumer.consume(1000, 0.05):
                if not m.error():
                    self.seen[m.topic()].setdefault(m.key().decode(), time.time())
        self.consumer.close()

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(10)


# --- 1. scheduler ------------------------------------------------------------------------------

def create_standing_orders(url: str, n: int, now: datetime) -> datetime:
    """n active weekly standing orders whose first occurrence is the day after tomorrow, 08:00 UTC;
    returns that instant. One is written by the scheduler's own command path (StandingOrder.new,
    store.insert_standing_order); the others are copies of its row in one INSERT ... SELECT
    generate_series, differing only in id and customer. (Not the StandingOrderChanged "created"
    announcements create_standing_order also puts in the outbox: what is measured is emission.)"""
    start = (now + timedelta(days=2)).date()
    template = StandingOrder.new(
        standing_order_id="so-" + uuid.uuid5(uuid.NAMESPACE_URL, "scale-0").hex, customer_id="scale-c-0",
        lines=[StandingLine(sku=SKU, quantity=10)], delivery=Delivery(**DELIVERY), payment=Payment(mode="account"),
        language="en",
        interval=Interval(every=1, unit="weeks"), start_date=start, time_zone="UTC")
    with psycopg.connect(url) as conn:
        scheduler_store.insert_standing_order(conn, template, now)
        columns = [r[0] for r in conn.execute(
            """SELECT column_name FROM information_schema.columns WHERE table_name = 'standing_orders'
               AND column_name NOT IN ('standing_order_id', 'customer_id') ORDER BY ordinal_position""")]
        cols = ", ".join(f'"{c}"' for c in columns)
        conn.execute(
            f"""INSERT INTO standing_orders (standing_order_id, customer_id, {cols})
                SELECT 'so-' || md5('scale-' || i), 'scale-c-' || (i %% 1000), {cols}
                FROM standing_orders, generate_series(1, %s) i WHERE standing_order_id = %s""",
            (n - 1, template.standing_order_id))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE standing_orders")   # as a table that has grown to this size would be
    return template.next_due_at


class ExplainConn:
    """A connection stand-in that runs the statement it is given under EXPLAIN ANALYZE: the plan
    of the store's own SQL, not of a copy of it."""

    def __init__(self, conn):
        self.conn, self.plan = conn, []

    def execute(self, query, params=None):
        self.plan = [r[0] for r in self.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params).fetchall()]
        return self

    def fetchone(self):
        return None

    def fetchall(self):
        return []

    @property
    def execution_ms(self) -> float | None:
        last = next((line for line in self.plan if line.startswith("Execution Time:")), None)
        return float(last.split()[2]) if last else None


def ticker_pick_plan(url: str, n: int, now: datetime) -> dict:
    """The ticker's pick of the next batch of due orders (store.lock_due_rows, one per
    transaction) with all n orders due, as a tick starts (nothing served yet) and as it ends
    (200 served).
    Rolled back: the row lock EXPLAIN ANALYZE takes goes with it."""
    out = {}
    with psycopg.connect(url) as conn:
        for label, served in (("served_0", []), ("served_200", [f"so-{uuid.uuid4().hex}" for _ in range(200)])):
            explain = ExplainConn(conn)
            scheduler_store.lock_due_rows(explain, now, served, SCHEDULES_PER_TRANSACTION)
            out[label] = {"execution_ms": explain.execution_ms, "plan": explain.plan}
            conn.rollback()
    out["due"] = n
    return out


def publish_product(bootstrap: str, changed_at: datetime) -> None:
    """The catalog entry orders prices the occurrences from, as the cart announces it."""
    ev = ProductChanged(sku=SKU, name="LED bulb 9 W E27", unit_price={"amount": "1.85", "currency": "EUR"},
                        active=True, changed_at=changed_at)
    key, value, headers = to_record(envelope(ev, source="scale-bench"))
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    p.produce("ProductChanged", key=key, value=value, headers=list(headers.items()))
    p.flush(30)


def outbox_profile(url: str, topic: str) -> dict:
    """From the scheduler's outbox: committed and published spans, and the commit rate over the
    first and the last tenth of the rows (does emission slow down as the run goes on?)."""
    with psycopg.connect(url) as conn:
        created = [r[0].timestamp() for r in conn.execute(
            "SELECT created_at FROM outbox WHERE topic = %s ORDER BY created_at", (topic,))]
        pub = conn.execute("SELECT min(published_at), max(published_at), count(published_at) FROM outbox "
                           "WHERE topic = %s", (topic,)).fetchone()
    n = len(created)
    out = {"rows": n, "published": pub[2]}
    if n >= 20:
        tenth = n // 10
        out.update(committed_per_s=rate(n, created[-1] - created[0]),
                   committed_per_s_first_tenth=rate(tenth, created[tenth] - created[0]),
                   committed_per_s_last_tenth=rate(tenth, created[-1] - created[-1 - tenth]))
    if pub[0] is not None and n:
        out["published_per_s"] = rate(pub[2], pub[1].timestamp() - created[0])
    return out


def scheduler_section(stack: EmbeddedStack, n: int, timeout: float) -> dict:
    clock = FileClock(stack.data_dir / "clock.json")
    clock.advance(timedelta(0))   # the file exists before the services read it
    with services(stack, ("scheduler", "orders"), {"SALESBUS_CLOCK_FILE": str(clock.path)}):
        cfg = stack_settings(stack)
        publish_product(stack.broker.bootstrap, clock.now() - timedelta(days=1))
        with psycopg.connect(cfg.database_for("orders")) as conn:
            wait_until(lambda: conn.execute("SELECT 1 FROM catalog_prices WHERE sku = %s", (SKU,)).fetchone(),
                       60, "orders to hold the catalog entry")
        t = time.time()
        due_at = create_standing_orders(cfg.database_for("scheduler"), n, clock.now())
        load_s = time.time() - t
        pick = ticker_pick_plan(cfg.database_for("scheduler"), n, due_at + timedelta(seconds=1))
        tail = Tail(stack.broker.bootstrap, ["RecurringOrderDue", "OrderPlaced", "StandingOrderOccurrenceFailed"])
        try:
            time.sleep(1)   # the tail has its partitions
            moved = time.time()
            clock.set(due_at + timedelta(seconds=1))   # business time: every order's first occurrence is due
            done = lambda: len(tail.seen["OrderPlaced"]) + len(tail.seen["StandingOrderOccurrenceFailed"]) >= n  # noqa: E731
            deadline = time.time() + timeout
            while not done() and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            tail.close()
        profile = outbox_profile(cfg.database_for("scheduler"), "RecurringOrderDue")
    due, placed = sorted(tail.seen["RecurringOrderDue"].values()), sorted(tail.seen["OrderPlaced"].values())
    r = {"standing_orders": n, "load_s": round(load_s, 1), "timeout_s": timeout,
         "due_on_topic": len(due), "orders_placed": len(placed),
         "occurrences_failed": len(tail.seen["StandingOrderOccurrenceFailed"]), "outbox": profile,
         "ticker_pick": pick,
         "target_due_per_s": TARGET_DUE_PER_S}
    if due:
        r.update(first_due_after_s=round(due[0] - moved, 2), last_due_after_s=round(due[-1] - moved, 2),
                 due_per_s=rate(len(due), due[-1] - due[0]))
    if placed:
        r.update(last_placed_after_s=round(placed[-1] - moved, 2), placed_per_s=rate(len(placed), placed[-1] - placed[0]),
                 placed_per_s_from_clock_move=rate(len(placed), placed[-1] - moved))
    r["met"] = bool(r.get("due_per_s") and r["due_per_s"] >= TARGET_DUE_PER_S and len(due) == n)
    r["order_confirmed"] = ("not measured: confirming needs payments (a supplier account per customer, then one "
                            "decision per order at ~50 orders/s in make bench), so the figure would be payments' "
                            "rate, not the scheduler's; bench/checkout_bench.py measures that leg")
    return r


def print_scheduler(r: dict) -> None:
    n = r["standing_orders"]
    print(f"scheduler: {n} active standing orders due at one instant (bulk-written in {r['load_s']} s), "
          f"business time moved past it")
    if r.get("due_per_s") is None:
        print(f"  RecurringOrderDue on the topic: not measured: {r['due_on_topic']} of {n} arrived within "
              f"{r['timeout_s']:.0f} s")
    else:
        partial = f", stopped waiting at {r['timeout_s']:.0f} s" if r["due_on_topic"] < n else ""
        print(f"  RecurringOrderDue on the topic: {r['due_per_s']:.0f}/s ({r['due_on_topic']} of {n}{partial}; first "
              f"{r['first_due_after_s']} s after the clock moved, last {r['last_due_after_s']} s) — target >= "
              f"{TARGET_DUE_PER_S}/s: {met(r['met'])}")
    o = r["outbox"]
    if o.get("committed_per_s"):
        print(f"  scheduler outbox: {o['rows']} committed at {o['committed_per_s']:.0f}/s (first tenth "
              f"{o['committed_per_s_first_tenth']:.0f}/s, last tenth {o['committed_per_s_last_tenth']:.0f}/s); "
              f"{o['published']} published, {o.get('published_per_s') or 0:.0f}/s from the first commit")
    if r.get("placed_per_s") is None:
        print(f"  orders placed from them: not measured: {r['orders_placed']} OrderPlaced within {r['timeout_s']:.0f} s")
    else:
        print(f"  orders placed from them (OrderPlaced by orders): {r['placed_per_s']:.0f}/s ({r['orders_placed']} of "
              f"{n}, {r['occurrences_failed']} failed; last {r['last_placed_after_s']} s after the clock moved: "
              f"{r['placed_per_s_from_clock_move']:.0f}/s end to end)")
    print(f"  OrderConfirmed for them: {r['order_confirmed']}")
    p = r["ticker_pick"]
    print(f"  the ticker's pick of the next {SCHEDULES_PER_TRANSACTION} due orders (store.lock_due_rows, once per transaction) with {p['due']} due: "
          f"{p['served_0']['execution_ms']} ms at a tick's start, {p['served_200']['execution_ms']} ms with 200 "
          f"served (EXPLAIN ANALYZE; plans in the JSON)")


# --- 2. inbox size -----------------------------------------------------------------------------

SOURCE = "scale-upstream"   # the consumed records' CloudEvents source: the fill shares it (one key range)


def consumer_handler(event: OrderPlaced, uow) -> None:
    """bench/runtime_bench.py's handler: one row written, one event emitted."""
    uow.conn.execute("INSERT INTO seen (order_id) VALUES (%s) ON CONFLICT DO NOTHING", (event.order_id,))
    uow.emit(OrderCancelled(order_id=event.order_id, customer_id=event.customer_id, reason="bench",
                            cancelled_at=uow.now()))


def consumer_migrations(stack: EmbeddedStack) -> Path:
    path = stack.data_dir / "scale_consumer_migrations"
    path.mkdir(exist_ok=True)
    # handled_at: clock_timestamp() is each row's own insert time, so the span is the handling's
    (path / "0001_seen.sql").write_text(
        "CREATE TABLE seen (order_id text PRIMARY KEY, handled_at timestamptz NOT NULL DEFAULT clock_timestamp());")
    return path


def publish_orders(cfg: Settings, n: int) -> None:
    producer = Producer({**cfg.kafka_common(), "linger.ms": 5, "enable.idempotence": True,
                         "partitioner": "murmur2_random"})
    now = datetime.now(timezone.utc)
    for i in range(n):
        ev = OrderPlaced.model_validate({
            "order_id": f"scale-{i}", "customer_id": f"c-{i % 50}", "placed_at": now,
            "lines": [{"sku": SKU, "name": "Bulb", "quantity": 2, "unit_price": {"amount": "1.85", "currency": "EUR"}}],
            "total": {"amount": "3.70", "currency": "EUR"}, "delivery": DELIVERY, "payment": {"mode": "account"}})
        key, value, headers = to_record(envelope(ev, source=SOURCE))
        while True:
            try:
                producer.produce("OrderPlaced", key=key, value=value, headers=list(headers.items()))
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)


def fill_inbox(url: str, rows: int, chunk: int = 1_000_000) -> float:
    """rows inbox rows as the batch path writes them (runtime/batch.py _record_in_inbox): the
    consumed records' source, random event ids (so new ids land all over the key range, as in
    production), received within the 30-day retention (the pruner deletes none of them).
    Vacuumed, analysed and checkpointed afterwards, so no maintenance runs during the timing."""
    t = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            conn.execute(
                """INSERT INTO inbox (source, event_id, topic, partition, "offset", outcome, received_at)
                   SELECT %s, gen_random_uuid()::text, 'OrderPlaced', i %% 3, i / 3, 'handled',
                          now() - interval '29 days' + (i::float8 / %s) * interval '29 days'
                   FROM generate_series(%s, %s) i""", (SOURCE, rows, lo, hi - 1))
            print(f"  inbox fill: {hi} of {rows} rows ({time.time() - t:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE inbox")
        conn.execute("CHECKPOINT")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('inbox'))").fetchone()[0]
    print(f"  inbox fill: done in {time.time() - t:.0f} s (vacuumed, checkpointed; table with indexes {size})",
          flush=True)
    return time.time() - t


def consumer_rate(cfg: Settings, migrations: Path, name: str, records: int, fill: int, timeout: float) -> dict:
    """One service (the runtime's consumer, inbox, batch transaction and relay, in this process
    as runtime_bench runs it) consumes the whole topic; rate from its first handled row to its
    last, so the consumer-group join is not counted."""
    url = with_dbname(cfg.database_url, name)
    db.migrate(url, migrations)
    out = {"inbox_rows_before": fill}
    if fill:
        out["fill_s"] = round(fill_inbox(url, fill), 1)
    proc = ServiceProcess(Service(name, {"OrderPlaced": consumer_handler}, migrations), cfg, WallClock())
    proc.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            count = lambda: conn.execute("SELECT count(*) FROM seen").fetchone()[0]  # noqa: E731
            wait_until(lambda: count() >= records, timeout, f"{name} to handle {records} records", every=0.1)
            span = conn.execute("SELECT EXTRACT(EPOCH FROM max(handled_at) - min(handled_at)) FROM seen").fetchone()[0]
    finally:
        proc.stop()
    out.update(records=records, seconds=round(float(span), 2), records_per_s=rate(records, float(span)))
    return out


def inbox_section(stack: EmbeddedStack, rows: int, records: int, timeout: float) -> dict:
    cfg = stack_settings(stack)
    migrations = consumer_migrations(stack)
    publish_orders(cfg, records)
    runs = {"empty": consumer_rate(cfg, migrations, "scale_inbox_empty", records, 0, timeout),
            "full": consumer_rate(cfg, migrations, "scale_inbox_full", records, rows, timeout),
            # the same again after the fill: the machine is shared, so how much an empty inbox's
            # rate moves by itself is part of reading the ratio
            "empty_again": consumer_rate(cfg, migrations, "scale_inbox_empty_again", records, 0, timeout)}
    empty = (runs["empty"]["records_per_s"] + runs["empty_again"]["records_per_s"]) / 2
    ratio = runs["full"]["records_per_s"] / empty
    return {"inbox_rows": rows, "records": records, "runs": runs, "empty_records_per_s": round(empty, 1),
            "full_records_per_s": runs["full"]["records_per_s"], "full_to_empty": round(ratio, 3),
            "target_max_slowdown": TARGET_INBOX_SLOWDOWN, "met": ratio >= 1 - TARGET_INBOX_SLOWDOWN}


def print_inbox(r: dict) -> None:
    runs = r["runs"]
    print(f"inbox    : {r['records']} records through one consumer (inbox + handler writing a row and emitting "
          f"an event, committed per batch of 500)")
    print(f"  empty inbox {runs['empty']['records_per_s']:.0f}/s; with {r['inbox_rows']} rows "
          f"{runs['full']['records_per_s']:.0f}/s; empty again {runs['empty_again']['records_per_s']:.0f}/s")
    print(f"  full / empty (mean of both empty runs, {r['empty_records_per_s']:.0f}/s) = {r['full_to_empty']:.2f} "
          f"— target: falls by no more than {TARGET_INBOX_SLOWDOWN:.0%}: {met(r['met'])}")


# --- 3. crm ------------------------------------------------------------------------------------

CRM_LOAD = [
    # Salespeople in four zones ("due today" is their day); about 500 customers each.
    """INSERT INTO salespeople (salesperson_id, email, time_zone, language, updated_at)
       SELECT 'sp-' || lpad(k::text, 4, '0'), 'sp-' || k || '@salesbus.example',
              (ARRAY['Europe/Zagreb', 'Europe/Berlin', 'Europe/London', 'America/New_York'])[1 + k %% 4], 'en', now()
       FROM generate_series(0, %(sp)s - 1) k""",
    # As create_profile writes them (source 'crm', needs_review false by default), one primary contact each.
    """INSERT INTO customers (customer_id, name, segment, language, time_zone, salesperson_id, created_at, updated_at)
       SELECT 'cust-' || lpad(i::text, 7, '0'), 'Customer ' || i || ' d.o.o.',
              (ARRAY['hospitality', 'facilities', 'retail', 'industry'])[1 + i %% 4], 'en', 'Europe/Zagreb',
              'sp-' || lpad((i %% %(sp)s)::text, 4, '0'), now() - (i %% 1000) * interval '1 day', now()
       FROM generate_series(0, %(c)s - 1) i""",
    """INSERT INTO key_contacts (customer_id, position, name, role, email, phone, is_primary)
       SELECT 'cust-' || lpad(i::text, 7, '0'), 0, 'Contact ' || i, 'purchasing manager',
              'buyer' || i || '@example.com', '+385 1 555 ' || i, true
       FROM generate_series(0, %(c)s - 1) i""",
    # Per customer: one open automatic reorder call due between a week ago and a month ahead, and
    # two closed tasks (a follow-up and a custom one) in the past year; each with its reminder.
    """INSERT INTO tasks (task_id, customer_id, salesperson_id, kind, title, notes, status, due_at, cause_key,
                          revision, reminder_id, created_by, created_at, updated_at, closed_at)
       SELECT md5(t.cause)::uuid::text, t.customer_id, t.sp, t.kind, t.kind || ' ' || t.customer_id, '',
              t.status, t.due_at, CASE WHEN t.kind = 'custom' THEN NULL ELSE t.cause END, 1,
              md5('reminder:' || t.cause)::uuid::text, CASE WHEN t.kind = 'custom' THEN t.sp ELSE 'crm' END,
              t.due_at - interval '3 days', t.due_at - interval '3 days',
              CASE WHEN t.status = 'done' THEN t.due_at + interval '1 hour' END
       FROM (SELECT 'cust-' || lpad(i::text, 7, '0') AS customer_id, 'sp-' || lpad((i %% %(sp)s)::text, 4, '0') AS sp,
                    (ARRAY['reorder_call', 'order_follow_up', 'custom'])[k + 1] AS kind,
                    CASE WHEN k = 0 THEN 'open' ELSE 'done' END AS status,
                    CASE WHEN k = 0 THEN now() + (random() * 37 - 7) * interval '1 day'
                         ELSE now() - random() * interval '365 days' END AS due_at,
                    (ARRAY['reorder:', 'follow_up:', 'custom:'])[k + 1] || i || ':' || k AS cause
             FROM generate_series(0, %(c)s - 1) i, generate_series(0, 2) k) t""",
    """INSERT INTO reminders (reminder_id, task_id, fire_at, state, settled_at)
       SELECT reminder_id, task_id, due_at - interval '24 hours',
              CASE WHEN status = 'open' THEN 'scheduled' ELSE 'sent' END,
              CASE WHEN status = 'open' THEN NULL ELSE due_at - interval '24 hours' END
       FROM tasks""",
]

# Timeline entries in chunks of 1M (progress shown), as the handlers write them: 60% contacts
# (log_contact / ContactLogged), 25% order milestones, 15% emails. Customers are skewed (customer
# k of C gets a share ~ sqrt((k+1)/C) - sqrt(k/C)): key accounts have thousands of entries, the
# median customer a few dozen; occurred within the last two years.
CRM_TIMELINE = """
INSERT INTO timeline (entry_id, customer_id, kind, subtype, occurred_at, summary, contact_name, salesperson_id,
                      source, order_id, detail, recorded_at)
SELECT CASE e.kind WHEN 'contact' THEN gen_random_uuid()::text
                   WHEN 'email' THEN 'notification:' || gen_random_uuid()
                   ELSE 'order:' || e.order_id || ':' || substr(e.subtype, 7) END,
       'cust-' || lpad(e.cust::text, 7, '0'), e.kind, e.subtype, e.at,
       CASE e.kind WHEN 'contact' THEN 'Talked about the next delivery and the price list'
                   WHEN 'email' THEN 'Your order (to buyer' || e.cust || '@example.com)'
                   ELSE 'Order ' || e.order_id END,
       CASE WHEN e.kind = 'contact' THEN 'Contact ' || e.cust END,
       CASE WHEN e.kind = 'contact' THEN 'sp-' || lpad((e.cust %% %(sp)s)::text, 4, '0') END,
       CASE e.kind WHEN 'contact' THEN 'crm' WHEN 'email' THEN 'notifications' ELSE 'orders' END,
       CASE WHEN e.kind <> 'contact' THEN e.order_id END,
       CASE e.kind WHEN 'email' THEN jsonb_build_object('recipient', 'buyer' || e.cust || '@example.com',
                                                        'language', 'en')
                   WHEN 'order' THEN jsonb_build_object('total', '18.50') ELSE '{}'::jsonb END,
       e.at
FROM (SELECT i, floor(%(c)s * power(random(), 2))::int AS cust,
             now() - random() * interval '730 days' AS at,
             CASE WHEN i %% 20 < 12 THEN 'contact' WHEN i %% 20 < 17 THEN 'order' ELSE 'email' END AS kind,
             CASE WHEN i %% 20 < 12
                  THEN (ARRAY['phone_call', 'email_out', 'email_in', 'site_visit', 'meeting', 'web_visit'])[1 + i %% 6]
                  WHEN i %% 20 < 17 THEN (ARRAY['order_placed', 'order_confirmed', 'order_shipped'])[1 + i %% 3]
                  ELSE (ARRAY['order_confirmation', 'shipping_confirmation', 'invoice'])[1 + i %% 3] END AS subtype,
             'ord-' || md5('scale-order-' || i) AS order_id
      FROM generate_series(%(lo)s, %(hi)s) i) e
"""


def load_crm(url: str, customers: int, entries: int, chunk: int = 1_000_000) -> dict:
    sp = max(1, customers // 500)
    t = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.11)")   # the same data every run
        for statement in CRM_LOAD:
            conn.execute(statement, {"sp": sp, "c": customers})
        for lo in range(0, entries, chunk):
            hi = min(entries, lo + chunk)
            conn.execute(CRM_TIMELINE, {"sp": sp, "c": customers, "lo": lo, "hi": hi - 1})
            print(f"  crm load: {hi} of {entries} timeline entries ({time.time() - t:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE")   # a table grown to this size is analysed and its visibility map set
        per_customer = conn.execute(
            """SELECT max(n), percentile_disc(0.5) WITHIN GROUP (ORDER BY n), count(*)
               FROM (SELECT count(*) AS n FROM timeline GROUP BY customer_id) x""").fetchone()
        tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    return {"salespeople": sp, "customers": customers, "timeline_entries": entries, "tasks": tasks,
            "entries_max_per_customer": per_customer[0], "entries_median_per_customer": per_customer[1],
            "customers_with_entries": per_customer[2], "load_s": round(time.time() - t, 1)}


WARM = 10   # untimed calls first: connections opened, statements prepared, caches warm


def crm_queries(rng: random.Random, sizes: dict, calls: int) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """name -> (what, [(HTTP path, argument)]): random salespeople and customers, the same for the
    HTTP and the SQL timing."""
    sps = [f"sp-{rng.randrange(sizes['salespeople']):04d}" for _ in range(WARM + calls)]
    custs = [f"cust-{rng.randrange(sizes['customers']):07d}" for _ in range(WARM + calls)]
    return {
        "due_today": ("a salesperson's tasks due today (GET /me/tasks?due=today)",
                      [(f"/me/tasks?due=today&salesperson_id={s}", s) for s in sps]),
        "timeline": ("a customer's timeline, first page (GET /customers/{id}/timeline)",
                     [(f"/customers/{c}/timeline", c) for c in custs]),
        "to_call": ("a salesperson's customers not contacted for 30 days (GET /customers?no_contact_days=30)",
                    [(f"/customers?no_contact_days=30&salesperson_id={s}", s) for s in sps]),
    }


def sql_call(name: str, conn, arg: str) -> None:
    """What the endpoint's route runs against the database (services/crm/api.py, task_api.py)."""
    now = datetime.now(timezone.utc)
    if name == "due_today":
        person = crm_store.salesperson(conn, arg)
        start, end = crm_tasks.day_window(now, person["time_zone"] if person else "UTC")
        task_store.open_tasks_of(conn, arg, due_from=start, due_before=end, limit=50, offset=0)
    elif name == "timeline":
        crm_commands.customer_or_404(conn, arg)
        crm_store.timeline_page(conn, arg, kind=None, newest_first=True, limit=50, offset=0)
    else:
        crm_store.customers_by_last_contact(conn, no_contact_since=now - timedelta(days=30), salesperson_id=arg,
                                            q=None, needs_review=None, limit=50, offset=0)


def timings(call, args) -> dict:
    for a in args[:WARM]:
        call(a)
    ms = []
    for a in args[WARM:]:
        t = time.perf_counter()
        call(a)
        ms.append((time.perf_counter() - t) * 1000)
    return {"calls": len(ms), "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1)}


def crm_section(stack: EmbeddedStack, customers: int, entries: int, calls: int) -> dict:
    url = with_dbname(stack.postgres.url, "crm")
    db.migrate(url, CRM.migrations)   # the service's own tables, loaded before it starts
    sizes = load_crm(url, customers, entries)
    queries = crm_queries(random.Random(7), sizes, calls)
    out = {**sizes, "target_p99_ms": TARGET_CRM_P99_MS, "queries": {}}
    key = issue_key(api_keys(stack), "operator", "scale-bench")   # before the start: no reload to wait for
    with services(stack, ("crm",)) as sup:
        with httpx.Client(base_url=f"http://127.0.0.1:{sup.port('crm')}", timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            def get(path):
                client.get(path).raise_for_status()
            for name, (what, items) in queries.items():
                out["queries"][name] = {"what": what, "http": timings(get, [p for p, _ in items])}
        # autocommit: each call its own transaction, as each request's pooled connection has
        with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
            for name, (_, items) in queries.items():
                out["queries"][name]["sql"] = timings(lambda a, n=name: sql_call(n, conn, a), [a for _, a in items])
    for q in out["queries"].values():
        q["met"] = q["http"]["p99_ms"] <= TARGET_CRM_P99_MS
    out["met"] = all(q["met"] for q in out["queries"].values())
    return out


def print_crm(r: dict) -> None:
    print(f"crm      : {r['customers']} customers, {r['timeline_entries']} timeline entries (median "
          f"{r['entries_median_per_customer']}, max {r['entries_max_per_customer']} for one customer), {r['tasks']} "
          f"tasks, {r['salespeople']} salespeople; loaded in {r['load_s']} s")
    for q in r["queries"].values():
        h, s = q["http"], q["sql"]
        print(f"  {q['what']}: HTTP p50 {h['p50_ms']} · p99 {h['p99_ms']} ms; its SQL alone p50 {s['p50_ms']} · "
              f"p99 {s['p99_ms']} ms ({h['calls']} calls) — target p99 <= {TARGET_CRM_P99_MS:.0f} ms: {met(q['met'])}")


# --- main --------------------------------------------------------------------------------------

SECTIONS = {
    "scheduler": (lambda stack, a: scheduler_section(stack, a.standing_orders, a.timeout), print_scheduler),
    "inbox": (lambda stack, a: inbox_section(stack, a.inbox_rows, a.inbox_records, a.timeout), print_inbox),
    "crm": (lambda stack, a: crm_section(stack, a.customers, a.contacts, a.calls), print_crm),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes: a few minutes")
    ap.add_argument("--only", choices=list(SECTIONS), action="append", help="run only this section (repeatable)")
    ap.add_argument("--standing-orders", type=int, help="standing orders due at once (100 000; quick 10 000)")
    ap.add_argument("--inbox-rows", type=int, help="rows in the full inbox (10 000 000; quick 1 000 000)")
    ap.add_argument("--inbox-records", type=int, help="records consumed per inbox run (50 000; quick 20 000)")
    ap.add_argument("--customers", type=int, help="crm customers (100 000; quick 10 000)")
    ap.add_argument("--contacts", type=int, help="crm timeline entries (5 000 000; quick 500 000)")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per crm query")
    ap.add_argument("--timeout", type=float, help="longest wait for one run's records (s)")
    ap.add_argument("--out", type=Path, default=ROOT / ".salesbus" / "scale.json")
    a = ap.parse_args()
    q = a.quick
    a.standing_orders = a.standing_orders or (10_000 if q else 100_000)
    a.inbox_rows = a.inbox_rows if a.inbox_rows is not None else (1_000_000 if q else 10_000_000)
    a.inbox_records = a.inbox_records or (20_000 if q else 50_000)
    a.customers = a.customers or (10_000 if q else 100_000)
    a.contacts = a.contacts if a.contacts is not None else (500_000 if q else 5_000_000)
    a.timeout = a.timeout or (120 if q else 900)   # quick: the rate shows within two minutes
    return a


def print_machine(m: dict) -> None:
    start, end = m["load_average_start"], m.get("load_average_end")
    print(f"machine  : {m['cores']} cores {m['cpu_model']}, {m['ram_gib']} GiB, Python {m['python']}; load average "
          f"{' '.join(map(str, start))} at start" + (f", {' '.join(map(str, end))} at end" if end else ""), flush=True)


def main() -> None:
    a = parse_args()
    result = {"mode": "quick" if a.quick else "full",
              "machine": {**machine(), "load_average_start": load_average()}}
    print_machine(result["machine"])
    started = time.time()
    for name in a.only or list(SECTIONS):
        run, show = SECTIONS[name]
        t = time.time()
        try:
            with embedded_stack(name) as stack:
                result[name] = run(stack, a)
        except Exception as exc:   # the other sections still run; this one says why it has no figure
            traceback.print_exc()
            result[name] = {"not_measured": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: not measured: {type(exc).__name__}: {exc}")
            continue
        result[name]["section_s"] = round(time.time() - t, 1)
        show(result[name])
        print(f"  ({name} section: {time.time() - t:.0f} s)", flush=True)
    result["machine"]["load_average_end"] = load_average()
    result["total_s"] = round(time.time() - started, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    print_machine(result["machine"])
    print(f"figures  : {a.out} (mode {result['mode']}, {result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
