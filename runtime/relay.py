"""The outbox relay: publishes pending outbox rows in order, then marks them published.

One relay per service database publishes at a time (a PostgreSQL advisory lock), which keeps
each aggregate's events in outbox order; other replicas stand by. If the relay dies after
the broker acknowledged a row but before marking it, the row is published again with the
same event id and downstream inboxes drop the repeat.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
from confluent_kafka import KafkaError, Producer

from runtime import metrics
from runtime.errors import TransientError
from runtime.faults import crash_point

log = logging.getLogger(__name__)
RELAY_LOCK = 4243


def producer_conf(kafka_conf: dict) -> dict:
    return {**kafka_conf, "enable.idempotence": True, "acks": "all", "linger.ms": 2,
            "compression.type": "lz4", "message.timeout.ms": 30000}


class OutboxRelay:
    def __init__(self, service: str, database_url: str, kafka_conf: dict, *, batch: int = 2000,
                 retention_hours: float = 24.0):
        self.service, self.database_url, self.batch = service, database_url, batch
        self.producer = Producer(producer_conf(kafka_conf))
        self.retention_hours = retention_hours
        self.stop_event = threading.Event()
        self.running = False
        self._last_gauge = self._last_prune = 0.0

    def run(self) -> None:
        self.running = True
        delay = 0.1
        try:
            while not self.stop_event.is_set():
                try:
                    with psycopg.connect(self.database_url, autocommit=True) as conn:
                        self._serve(conn)
                    delay = 0.1
                except (psycopg.OperationalError, psycopg.InterfaceError, TransientError) as exc:
                    metrics.RETRIES.labels(self.service, "relay").inc()
                    log.warning("%s relay: %s; retrying in %.1fs", self.service, exc, delay)
                    self.stop_event.wait(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            self.running = False
            self.producer.flush(5)

    def _serve(self, conn: psycopg.Connection) -> None:
        conn.execute("LISTEN outbox")
        while not self.stop_event.is_set():
            leader = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,)).fetchone()[0]
            if not leader:
                self.stop_event.wait(1.0)
                continue
            while not self.stop_event.is_set():
                published = self.publish_pending(conn)
                self._housekeeping(conn)
                if published < self.batch:
                    # Sleep until a writer's NOTIFY (or a second, as a safety net).
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        pass

    def publish_pending(self, conn: psycopg.Connection) -> int:
        rows = conn.execute(
            "SELECT id, topic, key, value, headers FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT %s",
            (self.batch,)).fetchall()
        if not rows:
            return 0
        failures: list[KafkaError] = []

        def on_delivery(err, _msg):
            if err is not None:
                failures.append(err)

        for _id, topic, key, value, headers in rows:
            hdrs = headers if isinstance(headers, dict) else json.loads(headers)
            self._produce(topic, key, bytes(value), list(hdrs.items()), on_delivery)
        remaining = self.producer.flush(30)
        if remaining or failures:
            # Nothing is marked: the whole batch goes again; inboxes drop what did arrive.
            raise TransientError(f"broker did not acknowledge {remaining or len(failures)} records: "
                                 f"{failures[0] if failures else 'timeout'}")
        crash_point("after_publish")
        conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY(%s)", ([r[0] for r in rows],))
        for r in rows:
            metrics.PUBLISHED.labels(self.service, r[1]).inc()
        return len(rows)

    def _produce(self, topic, key, value, headers, on_delivery) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)

    def _housekeeping(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        if now - self._last_gauge >= 1.0:
            self._last_gauge = now
            count, age = conn.execute(
                """SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
                   FROM outbox WHERE published_at IS NULL""").fetchone()
            metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
            metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(float(age))
        if now - self._last_prune >= 600:
            self._last_prune = now
            conn.execute("DELETE FROM outbox WHERE published_at < now() - %s * interval '1 hour'",
                         (self.retention_hours,))

    def stop(self) -> None:
        self.stop_event.set()
