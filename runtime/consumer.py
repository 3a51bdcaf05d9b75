"""The consuming side of a service: batch -> one transaction (inbox, handlers, outbox) -> offsets.

At-least-once delivery from Kafka plus the inbox's primary key gives each event one effect:
offsets are stored only after the database commit, so a crash anywhere before that redelivers
the batch, and the inbox skips what was already committed. What happens inside a batch (and
how a bad record is contained) is `runtime.batch`; this module owns Kafka.
"""
from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from psycopg_pool import ConnectionPool

from runtime import metrics
from runtime.batch import BatchProcessor, BatchResult, Handler  # noqa: F401 - re-exported
from runtime.clock import Clock
from runtime.containment import LOOP_ERRORS, Backoff, Fault, Stalls, classify, reason_of
from runtime.faults import crash_point
from runtime.record import Record

log = logging.getLogger(__name__)


class ConsumerLoop:
    """Kafka side: consumer group = service name; stores offsets only after the batch commits."""

    def __init__(self, service: str, handlers: dict[str, Handler], pool: ConnectionPool, clock: Clock,
                 kafka_conf: dict, *, batch_size: int = 500, batch_timeout_s: float = 0.05,
                 backoff_max_s: float = 5.0, session_timeout_ms: int = 6000, group_id: str | None = None,
                 stalls: Stalls | None = None, fetch_wait_max_ms: int = 500):
        self.service = service
        self.group = group_id or service
        self.processor = BatchProcessor(service, handlers, pool, clock, group=self.group)
        self.stalls = stalls or Stalls(service)
        self.topics = sorted(handlers)
        self.batch_size, self.batch_timeout_s, self.backoff_max_s = batch_size, batch_timeout_s, backoff_max_s
        self.stop_event = threading.Event()
        self.conf = {
            **kafka_conf,
            "group.id": self.group,
            "enable.auto.commit": True,          # commits what we stored, every second and on revoke
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,   # we store only after the DB commit
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
            # Settings.kafka_fetch_wait_max_ms: Kafka's 500 (a held fetch is answered when a record
            # arrives); the embedded stack gives Tansu 20, which sleeps out the whole wait
            "fetch.wait.max.ms": fetch_wait_max_ms,
        }
        self._last_lag = 0.0
        self.running = False
        #: (topic, partition) this member holds now: what an operator (and the scaling test) reads
        self.assignment: frozenset[tuple[str, int]] = frozenset()

    def _assigned(self, _consumer, partitions) -> None:
        self.assignment = self.assignment | {(p.topic, p.partition) for p in partitions}

    def _revoked(self, _consumer, partitions) -> None:
        self.assignment = self.assignment - {(p.topic, p.partition) for p in partitions}

    def run(self) -> None:
        consumer = Consumer(self.conf)
        consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        self.running = True
        log.info("%s consuming %s", self.service, ", ".join(self.topics))
        try:
            while not self.stop_event.is_set():
                msgs = self._next_batch(consumer)
                records = [m for m in msgs if not self._is_error(m)]
                if records:
                    if not self._process_until_committed(consumer, records):
                        break  # stopped while retrying: offsets stay where they were
                    self._store_offsets(consumer, records)
                self._report_lag(consumer)
        finally:
            self.running = False
            consumer.close()  # commits the offsets stored so far
            self.assignment = frozenset()

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        # consume(n, timeout) waits the whole timeout unless n records arrive: a latency floor on
        # every hop under light load. Wait for one record, then take whatever else is already here;
        # under heavy load the local queue fills while a batch is handled, so batches stay large.
        first = consumer.consume(1, self.batch_timeout_s)
        if not first:
            return []
        return first + consumer.consume(self.batch_size - 1, 0) if self.batch_size > 1 else first

    def _process_until_committed(self, consumer: Consumer, msgs: list[Message]) -> bool:
        """True once the batch committed; False if told to stop while retrying.

        Only an environment fault (database away) or a fault in the runtime itself reaches here:
        the same batch is retried with backoff, never skipped, and the stall is visible (the
        `salesbus_stalled_seconds` gauge, /readyz, lag still reported)."""
        records = [Record.from_message(m) for m in msgs]
        for r in records:
            metrics.CONSUMED.labels(self.service, r.topic).inc()
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        backoff = Backoff(cap_s=self.backoff_max_s)
        while True:
            started = time.perf_counter()
            try:
                self.processor.process(records)
                metrics.HANDLING_SECONDS.labels(self.service).observe(time.perf_counter() - started)
                self.stalls.flowing("consumer")
                crash_point("after_db_commit")
                return True
            except Exception as exc:  # noqa: BLE001 - never skip, never crash: retry and be seen
                fault = classify(exc)
                metrics.RETRIES.labels(self.service, "batch").inc()
                stalled = self.stalls.retrying("consumer", reason_of(exc, 300))
                delay = backoff.next()
                if fault is not Fault.ENVIRONMENT:
                    LOOP_ERRORS.labels(self.service, "consumer").inc()
                    log.exception("%s: batch of %d failed outside containment; retrying in %.1fs",
                                  self.service, len(records), delay)
                else:
                    log.warning("%s: %s; retrying batch of %d in %.1fs (stalled %.0fs)",
                                self.service, exc, len(records), delay, stalled)
                self._report_lag(consumer, force=True)
                if self.stop_event.wait(delay):
                    return False

    def _store_offsets(self, consumer: Consumer, records: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in records:
            last[(m.topic(), m.partition())] = max(last.get((m.topic(), m.partition()), -1), m.offset())
        try:
            consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
        except KafkaException as exc:
            # The partition moved to another member during the batch: it will redeliver, the inbox dedups.
            log.warning("%s: could not store offsets (%s); records will be redelivered", self.service, exc)

    def _is_error(self, m: Message) -> bool:
        err = m.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s consumer: %s", self.service, err)
        return True

    def _report_lag(self, consumer: Consumer, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5 and not force:
            return
        self._last_lag = now
        try:
            for tp in consumer.position(consumer.assignment()):
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    metrics.CONSUMER_LAG.labels(self.service, tp.topic, tp.partition).set(high - tp.offset)
        except KafkaException as exc:
            log.debug("lag not available: %s", exc)

    def stop(self) -> None:
        self.stop_event.set()
