"""Benchmark (not a test), issue 11: the CPU an order costs our consumers and their databases,
without the broker, the relays or the email sender, measured in one quiet process.

`checkout_bench.py` measures the whole stack, and on this 2-core VM its CPU per order moves by
a quarter between two runs of the same code (the host's other tenants). This one isolates the
part our handlers' SQL decides: N orders placed on one supplier account (as the bench's upstream
burst does) go through the real inbox, handlers and outbox of payments, orders and
notifications (runtime.batch.BatchProcessor, as the consumer calls it), each service on its own
migrated database of an embedded PostgreSQL, in batches of B records. What one service's
outbox holds becomes the next one's records, byte for byte: OrderPlaced to all three, payments'
InvoiceIssued / SupplierAccountChanged / PaymentVerified, orders' OrderConfirmed. It prints, per
order, this process's CPU (the handlers, the runtime, psycopg) and PostgreSQL's (every backend,
from /proc), and the statements per order when pg_stat_statements can be loaded.

    .venv/bin/python bench/handler_bench.py [N] [--batch B] [--out F]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from runtime import db  # noqa: E402
from runtime.batch import BatchProcessor  # noqa: E402
from runtime.clock import OffsetClock  # noqa: E402
from runtime.config import Settings, with_dbname  # noqa: E402
from runtime.embedded import Postgres  # noqa: E402
from runtime.record import Record  # noqa: E402
from runtime.service import load_service  # noqa: E402
from schemas import OrderPlaced, deterministic_id, envelope, to_record  # noqa: E402
from tests.harness import bind  # noqa: E402

from checkout_bench import DELIVERY  # noqa: E402  (the stack benchmark's upstream orders' delivery)

CUSTOMER = "bench-account"
SERVICES = ("payments", "orders", "notifications")



def order_records(n: int, prefix: str) -> list[Record]:
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        ev = OrderPlaced.model_validate({
            "order_id": f"{prefix}-{i}", "customer_id": CUSTOMER, "channel": "edi", "language": "en", "placed_at": now,
            "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb 9 W", "quantity": 10,
                       "unit_price": {"amount": "1.85", "currency": "EUR"}}],
            "total": {"amount": "18.50", "currency": "EUR"}, "delivery": DELIVERY, "payment": {"mode": "account"}})
        key, value, headers = to_record(envelope(ev, source="bench-upstream",
                                                 event_id=deterministic_id("OrderPlaced", ev.order_id)))
        out.append(Record("OrderPlaced", 0, i, key.encode(), value, tuple((k, v.encode()) for k, v in headers.items())))
    return out


def pg_cpu_s(postmaster_pid: int) -> float:
    """utime + stime of PostgreSQL's processes (the postmaster and its children, live ones)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in [postmaster_pid] + [int(p) for p in _children(postmaster_pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


class Service:
    def __init__(self, name: str, url: str, deps: dict):
        self.spec = load_service(name)
        db.migrate(url, self.spec.migrations)
        self.pool = db.make_pool(url, max_size=2, name=f"bench-{name}")
        self.pool.open()
        self.pool.wait(30)
        handlers = {topic: bind(h, deps) for topic, h in self.spec.handlers.items()}
        self.batch = BatchProcessor(name, handlers, self.pool, OffsetClock())
        self.offset = 0
        self.last_outbox = 0

    def handle(self, records: list[Record]) -> None:
        self.batch.process(records)

    def emitted(self) -> list[Record]:
        """What it emitted since the last call, as records (the relay would publish these bytes)."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT id, topic, key, value, headers FROM outbox WHERE id > %s ORDER BY id",
                                (self.last_outbox,)).fetchall()
        if rows:
            self.last_outbox = rows[-1]["id"]
        out = []
        for r in rows:
            headers = r["headers"] if isinstance(r["headers"], dict) else json.loads(r["headers"])
            self.offset += 1
            out.append(Record(r["topic"], 0, self.offset, r["key"].encode(), bytes(r["value"]),
                              tuple((k, v.encode()) for k, v in headers.items())))
        return out


def open_account(url: str) -> None:
    import psycopg

    from services.payments import store
    from services.payments.ledger import SupplierAccount
    with psycopg.connect(url) as conn:
        store.open_account(conn, SupplierAccount(CUSTOMER, Decimal("100000000.00"), Decimal("0.00"), "EUR", 30,
                                                 "active"), "bench", datetime.now(timezone.utc))


def statements(postgres_url: str) -> dict[str, int] | None:
    import psycopg
    try:
        with psycopg.connect(with_dbname(postgres_url, "postgres"), autocommit=True) as conn:
            rows = conn.execute("""SELECT d.datname, sum(s.calls)::bigint FROM pg_stat_statements s
                                   JOIN pg_database d ON d.oid = s.dbid GROUP BY d.datname""").fetchall()
    except psycopg.Error:
        return None
    return {name: calls for name, calls in rows if name in SERVICES}


def reset_statements(postgres_url: str) -> bool:
    import psycopg
    try:
        with psycopg.connect(with_dbname(postgres_url, "postgres"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except psycopg.Error:
        return False   # not preloaded (shared_preload_libraries): statements are not counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=20, help="records per consumer batch (the stack's form under load)")
    ap.add_argument("--out", default=str(ROOT / ".salesbus" / "handler-bench.json"))
    args = ap.parse_args()

    from services.crm.tasks import Policy
    from services.payments.simulated_gateway import SimulatedGateway

    data = Path(tempfile.mkdtemp(prefix="salesbus-handler-bench-"))
    pg = Postgres(data / "pg")
    try:
        # statements are counted by pg_stat_statements, which loads only at server start
        import psycopg
        with psycopg.connect(with_dbname(pg.url, "postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        pg.stop()
    pg = Postgres(data / "pg")
    try:
        base_url = pg.url
        deps = {"gateway": SimulatedGateway(data / "gateway.sqlite"),
                "currencies": Settings().supported_currencies(), "policy": Policy()}
        with psycopg.connect(with_dbname(base_url, "postgres"), autocommit=True) as conn:
            for name in SERVICES:
                conn.execute(f'CREATE DATABASE "{name}"')
        services = {name: Service(name, with_dbname(base_url, name), deps) for name in SERVICES}
        open_account(with_dbname(base_url, "payments"))
        for s in services.values():
            s.emitted()   # what opening the account emitted is not the orders' work

        def run(records: list[Record]) -> None:
            queue = list(records)
            while queue:
                inbound: dict[str, list[Record]] = {name: [] for name in SERVICES}
                for r in queue:   # to every service whose HANDLERS table names the topic, as the bus would
                    for name in SERVICES:
                        if r.topic in services[name].spec.handlers:
                            inbound[name].append(r)
                queue = []
                for name in SERVICES:
                    todo = inbound[name]
                    for i in range(0, len(todo), args.batch):
                        services[name].handle(todo[i:i + args.batch])
                    queue.extend(services[name].emitted())

        run(order_records(50, "warm"))   # warm-up: prepared statements, caches
        counted = reset_statements(base_url)
        orders = order_records(args.n, "hb")
        pid = pg.server.get_pid()
        cpu0, pg0, t0 = time.process_time(), pg_cpu_s(pid), time.perf_counter()
        run(orders)
        cpu1, pg1, t1 = time.process_time(), pg_cpu_s(pid), time.perf_counter()
        with services["notifications"].pool.connection() as conn:
            confirmed = conn.execute("SELECT count(*) AS n FROM notifications "
                                     "WHERE kind = 'order_confirmation' AND order_id LIKE 'hb-%%'").fetchone()["n"]
        calls = statements(base_url) if counted else None
        n = args.n
        result = {
            "orders": n, "batch": args.batch, "seconds": round(t1 - t0, 2), "emails_queued": confirmed,
            "client_cpu_ms_per_order": round((cpu1 - cpu0) / n * 1000, 3),
            "postgres_cpu_ms_per_order": round((pg1 - pg0) / n * 1000, 3),
            "statements_per_order": ({k: round(v / n, 2) for k, v in calls.items()} | {"all": round(sum(calls.values()) / n, 2)})
                                    if calls else None,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                        "load_average": [round(x, 2) for x in os.getloadavg()]},
        }
        print(f"{n} orders on one account, batches of {args.batch}, payments + orders + notifications "
              f"(no broker, no relay, no sender): {result['seconds']} s, {confirmed} confirmation emails queued")
        print(f"  CPU per order: this process (handlers, runtime, psycopg) {result['client_cpu_ms_per_order']} ms, "
              f"PostgreSQL {result['postgres_cpu_ms_per_order']} ms")
        if calls:
            print("  statements per order: " + ", ".join(f"{k} {v}" for k, v in result["statements_per_order"].items()))
        else:
            print("  statements per order: not counted (pg_stat_statements is not preloaded here)")
        print(f"  machine: {result['machine']}")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        for s in services.values():
            s.pool.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
