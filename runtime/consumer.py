"""The consuming side of a service: batch -> one transaction (inbox, handlers, outbox) -> offsets.

At-least-once delivery from Kafka plus the inbox's primary key gives each event one effect:
offsets are stored only after the database commit, so a crash anywhere before that redelivers
the batch, and the inbox skips what was already committed.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from psycopg_pool import ConnectionPool

from runtime import metrics
from runtime.clock import Clock
from runtime.db import TRANSIENT_DB_ERRORS
from runtime.dead_letters import dead_letter_row
from runtime.errors import Rejected, TransientError
from runtime.faults import crash_point
from runtime.outbox import OutboxRow, write_outbox
from runtime.uow import UnitOfWork
from schemas import REGISTRY
from schemas.envelope import InvalidRecord, TRACEPARENT_HEADER, parse_record

log = logging.getLogger(__name__)
Handler = Callable[..., None]
TRANSIENT = (*TRANSIENT_DB_ERRORS, TransientError)


@dataclass
class Decoded:
    msg: Message
    inbox_id: str
    event: object | None = None
    envelope: object | None = None
    error: InvalidRecord | None = None
    traceparent: str | None = None


@dataclass
class BatchResult:
    handled: list[str] = field(default_factory=list)            # topics
    duplicates: list[str] = field(default_factory=list)         # topics
    dead_lettered: list[tuple[str, str]] = field(default_factory=list)  # (topic, reason class)
    outbox: list[OutboxRow] = field(default_factory=list)


def decode(msg: Message) -> Decoded:
    headers = dict(msg.headers() or [])
    tp = headers.get(TRACEPARENT_HEADER)
    tp = tp.decode(errors="replace") if isinstance(tp, bytes) else tp
    try:
        ce, event = parse_record(msg.value(), REGISTRY)
        if ce.type != msg.topic():
            raise InvalidRecord(f"event type {ce.type!r} published on topic {msg.topic()!r}", ce.id)
        return Decoded(msg, ce.id, event, ce, traceparent=tp)
    except InvalidRecord as exc:
        # A record without a usable id is deduplicated by its position instead.
        inbox_id = exc.event_id or f"record:{msg.topic()}:{msg.partition()}:{msg.offset()}"
        return Decoded(msg, inbox_id, error=exc, traceparent=tp)


class _RetryCarefully(Exception):
    """A handler failed on the fast path: redo the batch with a savepoint per event."""


class BatchProcessor:
    """Handles one batch of records in one transaction. Pure of Kafka: testable with any Message list.

    Fast path: every handler runs in one pipelined transaction without savepoints (a savepoint
    per event doubled the round trips). If any handler fails, that transaction is rolled back
    and the batch is redone carefully, one savepoint per event, so only the failing event is
    dead-lettered and the others still commit.
    """

    def __init__(self, service: str, handlers: dict[str, Handler], pool: ConnectionPool, clock: Clock):
        self.service, self.handlers, self.pool, self.clock = service, handlers, pool, clock

    def process(self, msgs: list[Message]) -> BatchResult:
        decoded = [decode(m) for m in msgs]
        try:
            return self._process(decoded, careful=False)
        except _RetryCarefully:
            return self._process(decoded, careful=True)

    def _process(self, decoded: list[Decoded], careful: bool) -> BatchResult:
        result = BatchResult()
        with self.pool.connection() as conn, conn.transaction():
            fresh = self._record_in_inbox(conn, decoded)
            try:
                with nullcontext() if careful else conn.pipeline():
                    for d in decoded:
                        self._one(conn, d, fresh, result, careful)
                    write_outbox(conn, result.outbox)
            except TRANSIENT:
                raise
            except _RetryCarefully:
                raise
            except Exception as exc:
                if careful:
                    raise
                # A statement error surfaced at a pipeline sync, not inside one handler call.
                raise _RetryCarefully() from exc
        self._count(result)
        return result

    def _one(self, conn, d: Decoded, fresh: set[str], result: BatchResult, careful: bool) -> None:
        if d.inbox_id not in fresh:
            result.duplicates.append(d.msg.topic())
            return
        fresh.discard(d.inbox_id)  # a repeat later in the same batch is a duplicate too
        reason = d.error or self._handle(conn, d, result, careful)
        if reason is not None:
            result.dead_lettered.append((d.msg.topic(), type(reason).__name__))
            result.outbox.append(dead_letter_row(d.msg, reason, self.service, d.inbox_id))
            conn.execute("UPDATE inbox SET outcome = 'dead_lettered' WHERE event_id = %s", (d.inbox_id,))
        else:
            result.handled.append(d.msg.topic())

    def _count(self, result: BatchResult) -> None:
        # Counted only once the transaction committed: a rolled-back fast path counts nothing.
        for topic in result.duplicates:
            metrics.DUPLICATES.labels(self.service, topic).inc()
        for topic, reason in result.dead_lettered:
            metrics.DEAD_LETTERED.labels(self.service, topic, reason).inc()
        for topic in result.handled:
            metrics.HANDLED.labels(self.service, topic).inc()

    def _record_in_inbox(self, conn, decoded: list[Decoded]) -> set[str]:
        rows = conn.execute(
            """INSERT INTO inbox (event_id, topic, partition, "offset")
               SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::bigint[])
               ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
            ([d.inbox_id for d in decoded], [d.msg.topic() for d in decoded],
             [d.msg.partition() for d in decoded], [d.msg.offset() for d in decoded]),
        ).fetchall()
        return {r["event_id"] for r in rows}

    def _handle(self, conn, d: Decoded, result: BatchResult, careful: bool) -> Exception | None:
        """Run the handler. Returns the reason to dead-letter, or None.

        Transient faults propagate (the whole batch is retried); in careful mode a domain
        rejection or a bug in one event is dead-lettered with its reason so the events behind
        it still flow.
        """
        handler = self.handlers.get(d.msg.topic())
        if handler is None:
            return InvalidRecord(f"{self.service} has no handler for {d.msg.topic()}")
        uow = UnitOfWork(conn, source=self.service, clock=self.clock, cause=d.envelope, traceparent=d.traceparent)
        try:
            if careful:
                with conn.transaction():
                    handler(d.event, uow)
            else:
                handler(d.event, uow)
        except TRANSIENT:
            raise
        except Exception as exc:
            if not careful:
                raise _RetryCarefully() from exc
            if isinstance(exc, Rejected):
                log.info("%s rejected %s %s: %s", self.service, d.msg.topic(), d.inbox_id, exc)
            else:  # a bug: dead-lettered loudly, never silently dropped
                log.error("%s handler for %s failed on %s:\n%s", self.service, d.msg.topic(), d.inbox_id,
                          traceback.format_exc())
            return exc
        result.outbox.extend(uow.emitted)
        return None


class ConsumerLoop:
    """Kafka side: consumer group = service name; stores offsets only after the batch commits."""

    def __init__(self, service: str, handlers: dict[str, Handler], pool: ConnectionPool, clock: Clock,
                 kafka_conf: dict, *, batch_size: int = 500, batch_timeout_s: float = 0.05,
                 backoff_max_s: float = 5.0, session_timeout_ms: int = 6000, group_id: str | None = None):
        self.service = service
        self.processor = BatchProcessor(service, handlers, pool, clock)
        self.topics = sorted(handlers)
        self.batch_size, self.batch_timeout_s, self.backoff_max_s = batch_size, batch_timeout_s, backoff_max_s
        self.stop_event = threading.Event()
        self.conf = {
            **kafka_conf,
            "group.id": group_id or service,
            "enable.auto.commit": True,          # commits what we stored, every second and on revoke
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,   # we store only after the DB commit
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
            "fetch.wait.max.ms": 20,
        }
        self._last_lag = 0.0
        self.running = False

    def run(self) -> None:
        consumer = Consumer(self.conf)
        consumer.subscribe(self.topics)
        self.running = True
        log.info("%s consuming %s", self.service, ", ".join(self.topics))
        try:
            while not self.stop_event.is_set():
                msgs = self._next_batch(consumer)
                records = [m for m in msgs if not self._is_error(m)]
                if records:
                    if not self._process_until_committed(records):
                        break  # stopped while retrying: offsets stay where they were
                    self._store_offsets(consumer, records)
                self._report_lag(consumer)
        finally:
            self.running = False
            consumer.close()  # commits the offsets stored so far

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        # consume(n, timeout) waits the whole timeout unless n records arrive: a latency floor on
        # every hop under light load. Wait for one record, then take whatever else is already here;
        # under heavy load the local queue fills while a batch is handled, so batches stay large.
        first = consumer.consume(1, self.batch_timeout_s)
        if not first:
            return []
        return first + consumer.consume(self.batch_size - 1, 0) if self.batch_size > 1 else first

    def _process_until_committed(self, records: list[Message]) -> bool:
        """True once the batch committed; False if told to stop while retrying a transient fault."""
        for m in records:
            metrics.CONSUMED.labels(self.service, m.topic()).inc()
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self.processor.process(records)
                metrics.HANDLING_SECONDS.labels(self.service).observe(time.perf_counter() - started)
                crash_point("after_db_commit")
                return True
            except TRANSIENT as exc:
                # Never skip, never dead-letter: wait and try the same batch again.
                metrics.RETRIES.labels(self.service, "batch").inc()
                log.warning("%s: transient fault, retrying batch of %d in %.1fs: %s",
                            self.service, len(records), delay, exc)
                if self.stop_event.wait(delay):
                    return False
                delay = min(delay * 2, self.backoff_max_s)

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

    def _report_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5:
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
