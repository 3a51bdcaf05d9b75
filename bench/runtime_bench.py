"""Benchmark (not a test): records/s through one consuming service on the embedded stack.

Publishes N OrderPlaced records, then starts one service whose handler writes one row and emits
one event per record, and times until every record is in its inbox and every emitted event is
published by the outbox relay. Also prints the per-event-commit rate for comparison (batch size 1).

    .venv/bin/python bench/runtime_bench.py [N]
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.clock import WallClock  # noqa: E402
from runtime.config import Settings, with_dbname  # noqa: E402
from runtime.embedded import EmbeddedStack  # noqa: E402
from runtime.service import Service, ServiceProcess  # noqa: E402
from runtime.topics import ensure_topics  # noqa: E402
from schemas import OrderCancelled, OrderPlaced, envelope, to_record  # noqa: E402

MIGRATION = Path(tempfile.mkdtemp()) / "migrations"
MIGRATION.mkdir()
(MIGRATION / "0001_seen.sql").write_text("CREATE TABLE seen (order_id text PRIMARY KEY);")


def handle(event: OrderPlaced, uow) -> None:
    uow.conn.execute("INSERT INTO seen (order_id) VALUES (%s) ON CONFLICT DO NOTHING", (event.order_id,))
    uow.emit(OrderCancelled(order_id=event.order_id, customer_id=event.customer_id, reason="bench",
                            cancelled_at=uow.now()))


def publish(cfg: Settings, topic: str, n: int) -> None:
    producer = Producer({**cfg.kafka_common(), "linger.ms": 5, "enable.idempotence": True})
    for i in range(n):
        ev = OrderPlaced.model_validate({
            "order_id": f"bench-{i}", "customer_id": f"c-{i % 50}",
            "lines": [{"sku": "BULB-LED-9W", "name": "Bulb", "quantity": 2, "unit_price": {"amount": "1.85", "currency": "EUR"}}],
            "total": {"amount": "3.70", "currency": "EUR"},
            "delivery": {"recipient": "R", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
                         "country": "HR", "phone": "+385 1", "email": "b@example.hr"},
            "payment": {"mode": "account"}, "placed_at": datetime.now(timezone.utc)})
        key, value, headers = to_record(envelope(ev, source="bench"))
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def run_service(cfg: Settings, name: str, n: int, batch_size: int) -> tuple[float, float]:
    cfg = cfg.model_copy(update={"batch_size": batch_size})
    proc = ServiceProcess(Service(name, {"OrderPlaced": handle}, MIGRATION), cfg, WallClock())
    started = time.perf_counter()
    proc.start()
    url = with_dbname(cfg.database_url, name)
    handled_at = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                handled = conn.execute("SELECT count(*) FROM inbox").fetchone()[0]
                if handled >= n and handled_at is None:
                    handled_at = time.perf_counter()
                if handled_at and not conn.execute("SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1").fetchone():
                    # From the first batch's commit, so the consumer-group join is not counted.
                    handling, publishing = conn.execute(
                        """SELECT EXTRACT(EPOCH FROM max(received_at) - min(received_at)),
                                  EXTRACT(EPOCH FROM max(published_at) - min(created_at)) FROM inbox, 
                                  (SELECT min(created_at) AS created_at, max(published_at) AS published_at FROM outbox) o""").fetchone()
                    return float(handling), float(publishing)
                time.sleep(0.05)
    finally:
        proc.stop()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    stack = EmbeddedStack(Path(tempfile.mkdtemp(prefix="salesbus-bench-"))).start()
    try:
        cfg = Settings(kafka_bootstrap=stack.broker.bootstrap, database_url=stack.postgres.url)
        ensure_topics(cfg.kafka_common())
        t = time.perf_counter()
        publish(cfg, "OrderPlaced", n)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"published {n} OrderPlaced in {time.perf_counter() - t:.1f}s")
        for batch in (500, 1):
            name = f"bench_{batch}_{uuid.uuid4().hex[:6]}"
            handled, published = run_service(cfg, name, n, batch)
            print(f"batch size {batch:>4}: {n / handled:8.0f} records/s handled (inbox + handler + outbox, committed); "
                  f"{n / published:8.0f} records/s from first emit to last publish by the outbox relay")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
