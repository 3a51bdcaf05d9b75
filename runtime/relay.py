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
from confluent_kafka import KafkaError, KafkaException, Producer

from runtime import metrics
from runtime.containment import SET_ASIDE, Stalls, guarded_loop, storable
from runtime.errors import TransientError
from runtime.faults import crash_point
from runtime.outbox import PENDING_SQL

log = logging.getLogger(__name__)
RELAY_LOCK = 4243
#: a too-large dead letter is published as its first 64 KiB (and 1 KiB per kept header)
MAX_TRUNCATED_VALUE = 64 * 1024
MAX_TRUNCATED_HEADER = 1024
_MISSING = object()
# Errors after which the broker will never take this record as it is; anything else may pass.
_PERMANENT_CODES = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE,
                    KafkaError.INVALID_MSG, KafkaError.INVALID_MSG_SIZE, KafkaError._INVALID_ARG,
                    KafkaError.POLICY_VIOLATION}


def _permanent(err: KafkaError) -> bool:
    return err.code() in _PERMANENT_CODES


def producer_conf(kafka_conf: dict) -> dict:
    return {
        **kafka_conf,
        "enable.idempotence": True,          # a librdkafka retry never writes a row twice or out of order
        "acks": "all",                       # a row is marked published only once every in-sync replica has it
        "linger.ms": 2,                      # a little batching under load, without a latency floor when idle
        "compression.type": "lz4",           # CloudEvents JSON compresses well, at little CPU
        "message.timeout.ms": 30000,         # = the 30 s flush in _send: a row not acknowledged by then is
                                             # left unmarked and sent again (inboxes drop a repeat)
        # murmur2_random: a keyed record goes to toPositive(murmur2(key)) % partitions, as the Java
        # client (and Go's sarama/franz-go in their Java-compatible modes) puts it, so an upstream
        # Java producer and this relay put one aggregate on one partition, in order. librdkafka's
        # default (consistent_random, CRC32) would scatter the same key elsewhere. Keyless: random.
        "partitioner": "murmur2_random",
    }


#: how often a leading relay compares the broker's cluster id with the last one it published to
BROKER_CHECK_S = 10.0


class OutboxRelay:
    def __init__(self, service: str, database_url: str, kafka_conf: dict, *, batch: int = 2000,
                 retention_hours: float = 24.0, stalls: Stalls | None = None,
                 broker_check_s: float = BROKER_CHECK_S):
        self.service, self.database_url, self.batch = service, database_url, batch
        self.kafka_conf = kafka_conf
        self.producer = Producer(producer_conf(kafka_conf))
        self.retention_hours = retention_hours
        self.broker_check_s = broker_check_s
        self.stop_event = threading.Event()
        self.stalls = stalls or Stalls(service)
        self.running = False
        self._last_gauge = self._last_prune = self._last_broker_check = 0.0

    def run(self) -> None:
        self.running = True
        try:
            guarded_loop(self.service, "relay", self._serve_once, self.stop_event, stalls=self.stalls, idle_s=0)
        finally:
            self.running = False
            self.producer.flush(5)

    def _serve_once(self) -> bool:
        """One connection's life; guarded_loop retries (visibly) whatever ends it early."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            self._serve(conn)
        return True

    def _serve(self, conn: psycopg.Connection) -> None:
        listening = False
        while not self.stop_event.is_set():
            leader = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,)).fetchone()[0]
            if not leader:
                # A standby does not LISTEN: notifications it never reads would pile up in memory.
                self.stop_event.wait(1.0)
                continue
            if not listening:
                conn.execute("LISTEN outbox")
                listening = True
            self.check_broker(conn)
            while not self.stop_event.is_set():
                published = self.publish_pending(conn)
                self.stalls.flowing("relay")
                self._housekeeping(conn)
                if published < self.batch:
                    # Sleep until a writer's NOTIFY (or a second, as a safety net).
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        pass

    def check_broker(self, conn: psycopg.Connection) -> int:
        """Second line of defence behind a durable broker: when the cluster id differs from the one
        this relay last published to, the broker lost what it had (or was replaced), so every
        retained outbox row is queued again, in id order (per-key order holds). Returns how many."""
        self._last_broker_check = time.monotonic()
        try:
            cluster = self.producer.list_topics(timeout=5).cluster_id
        except KafkaException as exc:
            raise TransientError(f"broker metadata: {exc}") from exc
        if not cluster:
            return 0  # a broker that names no cluster cannot be compared
        row = conn.execute("SELECT cluster_id FROM relay_broker").fetchone()
        if row is None:
            conn.execute("INSERT INTO relay_broker (cluster_id) VALUES (%s) ON CONFLICT DO NOTHING", (cluster,))
            return 0
        if row[0] == cluster:
            return 0
        # The idempotent producer's id and sequence numbers belong to the old broker: the new one
        # would time every record out. A new producer starts a new idempotent session.
        self.producer.purge()
        self.producer = Producer(producer_conf(self.kafka_conf))
        with conn.transaction():
            again = conn.execute("UPDATE outbox SET published_at = NULL "
                                 "WHERE published_at IS NOT NULL AND failed_at IS NULL").rowcount
            conn.execute("UPDATE relay_broker SET cluster_id = %s, seen_at = now()", (cluster,))
        metrics.REPUBLISHED.labels(self.service).inc(again)
        log.warning("%s relay: the broker is a new one (cluster %s, was %s): publishing the %d retained "
                    "outbox rows again", self.service, cluster, row[0], again)
        return again

    def publish_pending(self, conn: psycopg.Connection) -> int:
        """Publish one batch of pending rows; returns how many rows it settled.

        Each row ends published, or — when the broker can never take it (too large, invalid) —
        set aside in the outbox with its reason (a too-large dead letter is published truncated,
        saying where the full record is kept), so the rows behind it still go. A fault that may
        pass (broker away, timeout) raises TransientError after marking what did arrive."""
        rows = conn.execute(
            """SELECT id, topic, key, value, headers FROM outbox
               WHERE published_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT %s""",
            (self.batch,)).fetchall()
        if not rows:
            return 0
        outcome = self._send(rows)
        refused = {rid: err for rid, err in outcome.items() if err is not None and _permanent(err)}
        truncated = self._send_truncated([r for r in rows if r[0] in refused and r[1].endswith(".DLQ")], refused)
        delivered = [r[0] for r in rows if outcome.get(r[0], _MISSING) is None]
        crash_point("after_publish")
        if delivered:
            conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY(%b)", (delivered,))
        for r in rows:
            if r[0] in delivered:
                metrics.PUBLISHED.labels(self.service, r[1]).inc()
        for rid, err in refused.items():
            topic = next(r[1] for r in rows if r[0] == rid)
            note = "published truncated; the full record is kept here" if truncated.get(rid, _MISSING) is None else ""
            conn.execute("UPDATE outbox SET failed_at = now(), failure = %s WHERE id = %s",
                         (storable(f"{err.name()}: {err.str()}" + (f" ({note})" if note else "")), rid))
            metrics.OUTBOX_FAILED.labels(self.service, topic, err.name()).inc()
            SET_ASIDE.labels(self.service, "outbox", err.name()).inc()
            log.error("%s relay: broker refused outbox row %s for %s for good: %s%s", self.service, rid, topic,
                      err.str(), f" ({note})" if note else "")
        pending = [rid for rid, err in outcome.items() if err is not None and rid not in refused]
        if pending:
            first = outcome[pending[0]]
            # Not marked: they go again; inboxes drop what did arrive.
            raise TransientError(f"broker did not acknowledge {len(pending)} records: {first.str()}")
        return len(rows)

    def _send(self, rows) -> dict[int, KafkaError | None]:
        """Produce every row, wait for the acknowledgements: row id -> None (acked) or the error."""
        outcome: dict[int, KafkaError | None] = {}
        for rid, topic, key, value, headers in rows:
            hdrs = headers if isinstance(headers, dict) else json.loads(headers)
            self._produce(rid, topic, key, bytes(value), list(hdrs.items()), outcome)
        remaining = self.producer.flush(30)
        if remaining:
            for rid, *_ in rows:
                outcome.setdefault(rid, KafkaError(KafkaError._MSG_TIMED_OUT, "not acknowledged within 30s"))
        return outcome

    def _produce(self, rid, topic, key, value, headers, outcome) -> None:
        def on_delivery(err, _msg):
            outcome[rid] = err
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused before it left: too large, invalid argument
                outcome[rid] = exc.args[0]
                return

    def _send_truncated(self, rows, refused) -> dict[int, KafkaError | None]:
        """A dead letter too large for the broker goes out as a bounded copy that says so."""
        if not rows:
            return {}
        copies = []
        for rid, topic, key, value, headers in rows:
            hdrs = headers if isinstance(headers, dict) else json.loads(headers)
            kept = {k: v[:MAX_TRUNCATED_HEADER] for k, v in hdrs.items()
                    if k.startswith(("__connect.errors.", "salesbus.", "ce_", "traceparent"))}
            kept["salesbus.dlq.truncated"] = f"value {len(bytes(value))} bytes, {len(hdrs)} headers"
            kept["salesbus.dlq.full"] = f"outbox row {rid} of the {self.service} database"
            copies.append((rid, topic, key, bytes(value)[:MAX_TRUNCATED_VALUE], kept))
        return self._send(copies)

    def _housekeeping(self, conn: psycopg.Connection) -> None:
        now = time.monotonic()
        if now - self._last_gauge >= 1.0:
            self._last_gauge = now
            count, age = conn.execute(PENDING_SQL).fetchone()
            metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
            metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(float(age))
        if now - self._last_broker_check >= self.broker_check_s:
            self.check_broker(conn)
        if now - self._last_prune >= 600:
            self._last_prune = now
            conn.execute("DELETE FROM outbox WHERE published_at < now() - %s * interval '1 hour'",
                         (self.retention_hours,))

    def stop(self) -> None:
        self.stop_event.set()
        # wake a relay sleeping on LISTEN now rather than at its 1 s safety net (a stop of the
        # whole stack waited for it). Best effort, at most 2 s: with the database unreachable the
        # relay still wakes within its safety net, so the stop goes on either way.
        try:
            with psycopg.connect(self.database_url, autocommit=True, connect_timeout=2) as conn:
                conn.execute("NOTIFY outbox")
        except psycopg.Error as exc:
            log.debug("%s relay: could not wake the listener at stop (%s); it wakes within 1 s", self.service, exc)
