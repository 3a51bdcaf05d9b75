"""Benchmark (not a test): N orders through checkout → OrderConfirmed → confirmation email on the
embedded stack, every service its own process (as `salesbus up` runs them).

Prints orders/s (first checkout to last confirmation email) and p50/p95/p99 latency from the
checkout request to OrderConfirmed on the bus; then, in the same run, the raw broker rate for
the same number of Kafka hops with no logic (consume → produce chains), and the ratio.

    .venv/bin/python bench/checkout_bench.py [N] [CLIENT_THREADS]
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.seed import seed_catalog  # noqa: E402
from runtime.auth import issue_key  # noqa: E402
from runtime.embedded import EmbeddedStack  # noqa: E402
from runtime.supervisor import Supervisor  # noqa: E402
from runtime.topics import ensure_topics  # noqa: E402

# checkout → OrderPlaced → (payments) PaymentVerified → (orders) OrderConfirmed → (notifications) email + NotificationSent
HOPS = ["OrderPlaced", "PaymentVerified", "OrderConfirmed", "NotificationSent"]
DELIVERY = {"recipient": "Goods in", "address_lines": ["Industrial zone 4"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 555", "email": "bench@example.hr"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Arrivals:
    """Wall-clock arrival time of each order id on the given topics (a group-less tail)."""

    def __init__(self, bootstrap: str, topics: list[str]):
        self.seen: dict[str, dict[str, float]] = {t: {} for t in topics}
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 10,
                                  "session.timeout.ms": 6000})
        self.consumer.subscribe(topics)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            for m in self.consumer.consume(500, 0.1):
                if not m.error():
                    # NotificationSent is keyed by customer: take the order id from the payload
                    order_id = json.loads(m.value())["data"].get("order_id")
                    self.seen[m.topic()].setdefault(order_id, time.time())
        self.consumer.close()


_clients = threading.local()


def checkout(base: str, key: str, i: int) -> tuple[str, float]:
    # One keep-alive client per thread: creating an httpx.Client costs ~30 ms (its SSL context),
    # which would measure the benchmark rather than the system.
    c = getattr(_clients, "c", None)
    if c is None:
        c = _clients.c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    cart = c.post("/carts").json()["cart_id"]
    c.put(f"/carts/{cart}/lines/BULB-LED-9W", json={"quantity": 10 + i % 7})
    started = time.time()
    r = c.post(f"/carts/{cart}/checkout", headers={"Idempotency-Key": uuid.uuid4().hex},
               json={"delivery": DELIVERY, "payment": {"mode": "account"}, "language": "en"})
    r.raise_for_status()
    return r.json()["order_id"], started


def system_run(stack: EmbeddedStack, n: int, threads: int) -> dict:
    keys = stack.data_dir / "api_keys.json"
    keys.write_text("{}")
    sup = Supervisor(stack, services=("cart", "payments", "orders", "notifications"),
                     extra_env={"SALESBUS_API_KEYS_FILE": str(keys), "SALESBUS_DC_SHIP_DELAY_S": "-1"})
    sup.start()
    try:
        base = lambda s: f"http://127.0.0.1:{sup.port(s)}"  # noqa: E731
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if all(httpx.get(f"http://127.0.0.1:{sup.port(s, 'metrics')}/readyz").status_code == 200
                       for s in sup.children):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        op = issue_key(keys, "operator", "bench")
        with httpx.Client(base_url=base("cart"), headers={"Authorization": f"Bearer {op}"}) as c:
            seed_catalog(c)
        with httpx.Client(base_url=base("payments"), headers={"Authorization": f"Bearer {op}"}) as c:
            c.put("/accounts/bench-customer", json={"credit_limit": "100000000.00", "currency": "EUR",
                                                    "payment_terms_days": 30, "status": "active"}).raise_for_status()
        key = issue_key(keys, "customer", "bench-customer")
        arrivals = Arrivals(stack.broker.bootstrap, ["OrderConfirmed", "NotificationSent"])
        arrivals.thread.start()
        time.sleep(4)  # the tail's group join
        checkout(base("cart"), key, 0)  # warm-up: every consumer has joined its group
        time.sleep(3)
        with ThreadPoolExecutor(threads) as pool:
            started = list(pool.map(lambda i: checkout(base("cart"), key, i), range(n)))
        t_checkouts_done = time.time()
        t_first = min(s for _, s in started)
        ids = {oid for oid, _ in started}
        deadline = time.time() + 600
        while time.time() < deadline and not ids <= set(arrivals.seen["NotificationSent"]) | {None}:
            time.sleep(0.2)
        arrivals.stop.set()
        confirmed = arrivals.seen["OrderConfirmed"]
        latencies = [confirmed[oid] - s for oid, s in started if oid in confirmed]
        notified = arrivals.seen["NotificationSent"]
        t_last = max(notified.get(oid, 0) for oid in ids)
        t_confirmed = max(confirmed.get(oid, 0) for oid in ids)
        return {"n": n, "confirmed": len(latencies), "emailed": sum(1 for o in ids if o in notified),
                "rate": n / (t_last - t_first), "latencies": latencies,
                "stages": {"checkout (HTTP, 3 requests each)": n / (t_checkouts_done - t_first),
                           "to OrderConfirmed": n / (t_confirmed - t_first),
                           "to email sent": n / (t_last - t_first)}}
    finally:
        sup.stop()


def raw_broker_run(bootstrap: str, n: int) -> float:
    """The same hops through the broker with no logic: a producer, then one consume→produce relay per
    hop, all running at once (as the services do), each consumer joined before the clock starts."""
    topics = [f"bench-raw-{uuid.uuid4().hex[:6]}-{i}" for i in range(len(HOPS))]
    ensure_topics({"bootstrap.servers": bootstrap}, 3, 1, topics)
    payload = b"x" * 900  # about the size of an OrderPlaced CloudEvent
    done = threading.Event()
    arrived = [0]
    joined = threading.Barrier(len(topics) + 1)  # every relay plus the producer

    def relay(src: str, dst: str | None) -> None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{src}", "auto.offset.reset": "earliest",
                             "session.timeout.ms": 6000, "enable.auto.commit": True, "fetch.wait.max.ms": 10})
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True, "acks": "all"})
        consumer.subscribe([src])
        while not consumer.assignment():
            consumer.poll(0.1)
        joined.wait()
        while not done.is_set():
            for m in consumer.consume(500, 0.1):
                if m.error():
                    continue
                if dst:
                    producer.produce(dst, key=m.key(), value=m.value())
                else:
                    arrived[0] += 1
                    if arrived[0] >= n:
                        done.set()
            producer.poll(0)
        producer.flush()
        consumer.close()

    threads = [threading.Thread(target=relay, args=(src, dst), daemon=True)
               for src, dst in zip(topics, topics[1:] + [None])]
    for t in threads:
        t.start()
    joined.wait()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True, "acks": "all"})
    started = time.time()
    for i in range(n):
        producer.produce(topics[0], key=str(i), value=payload)
        if i % 500 == 0:
            producer.poll(0)
    producer.flush()
    done.wait(300)
    return n / (time.time() - started)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    stack = EmbeddedStack(Path(tempfile.mkdtemp(prefix="salesbus-bench-"))).start()
    try:
        ensure_topics({"bootstrap.servers": stack.broker.bootstrap})
        result = system_run(stack, n, threads)
        raw = raw_broker_run(stack.broker.bootstrap, n)
    finally:
        stack.stop()
    lat = result["latencies"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{n} orders, {threads} client threads, 4 service processes + broker + PostgreSQL on the same machine")
    print(f"system : {result['rate']:.0f} orders/s checkout→email ({result['confirmed']} confirmed, {result['emailed']} emailed); "
          f"checkout→OrderConfirmed p50 {percentile(lat, 50) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms, "
          f"p99 {percentile(lat, 99) * 1000:.0f} ms (mean {statistics.mean(lat) * 1000:.0f} ms)")
    print("stages : " + ", ".join(f"{k} {v:.0f}/s" for k, v in result["stages"].items()))
    print(f"broker : {raw:.0f} records/s through the same {len(HOPS)} hops with no logic (one Python process)")
    print(f"ratio  : the system runs at {result['rate'] / raw:.1%} of the raw broker rate")


if __name__ == "__main__":
    main()
