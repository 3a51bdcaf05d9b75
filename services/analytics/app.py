"""The analytics faust app: consume the business topics into fact tables, serve the figures.

Built by ``create_app(...)`` (so tests run isolated copies under their own app id, consumer
group, changelog topics and data dir); run by ``run(...)`` or ``python -m services.analytics``.
See services/analytics/__init__.py for why at-least-once delivery is fine here.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Callable

import faust

from runtime.clock import Clock, clock_from_env
from runtime.dead_letters import dead_letter_row
from runtime.record import Record
from schemas import REGISTRY
from schemas.envelope import InvalidRecord, parse_record
from services.analytics import metrics
from services.analytics.aggregates import LOGGED
from services.analytics.facts import TABLES, TOPICS, fact_of, merged, position_key, positions_by_topic

log = logging.getLogger(__name__)
DEFAULT_APP_ID = "salesbus-analytics"


class Analytics:
    """The state behind the app: fact tables, processed positions, and a cache of computed views
    (invalidated by every applied record, so a view is computed at most once per change)."""

    def __init__(self, app: faust.App, clock: Clock):
        self.app, self.clock = app, clock
        self.tables = {name: app.Table(name, default=None, key_type=str, value_type=None) for name in TABLES}
        self.positions = app.Table("positions", default=None, key_type=str, value_type=None)
        self.version = 0
        self._cache: dict[tuple, Any] = {}
        self._cache_version = -1

    async def handle(self, event) -> None:
        msg = event.message
        try:
            ce, payload = parse_record(event.value, REGISTRY)
            if ce.type != msg.topic:
                raise InvalidRecord(f"event type {ce.type!r} published on topic {msg.topic!r}", ce.id)
            table, key, fact = fact_of(payload)
            if table in LOGGED and msg.timestamp:
                # when the event was published, on the wall clock (the Kafka record timestamp the
                # producer set): processing latency, whatever the business clock did
                fact = {**fact, "logged_at": round(float(msg.timestamp), 3)}
            if table == "accounts":
                fact = {**fact, "offset": msg.offset}   # orders two changes of one instant (facts.merged)
        except Exception as exc:  # an unusable record goes to <topic>.DLQ; analytics carries on
            await self.dead_letter(msg, exc)
        else:
            store = self.tables[table]
            value = merged(table, store.get(key), fact)
            if value is not None:
                store[key] = value
            metrics.EVENTS.labels(msg.topic).inc()
        pos = position_key(msg.topic, msg.partition)
        if (self.positions.get(pos) or 0) < msg.offset + 1:
            self.positions[pos] = msg.offset + 1
        self.version += 1

    async def dead_letter(self, msg, exc: Exception) -> None:
        if not isinstance(exc, InvalidRecord):
            log.error("analytics could not use %s[%s]@%s:\n%s", msg.topic, msg.partition, msg.offset,
                      traceback.format_exc())
        else:
            log.info("analytics dead-letters %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
        headers = msg.headers.items() if isinstance(msg.headers, dict) else (msg.headers or [])
        record = Record(msg.topic, msg.partition, msg.offset, msg.key, msg.value, tuple(headers))
        row = dead_letter_row(record, exc, self.app.conf.id,
                              f"record:{msg.topic}:{msg.partition}:{msg.offset}")
        # Awaited: the record's offset must not be committed before its dead letter is written.
        await self.app.producer.send_and_wait(row.topic, row.key.encode(), row.value, None, None,
                                              [(k, v.encode()) for k, v in row.headers.items()])
        metrics.DEAD_LETTERED.labels(msg.topic, type(exc).__name__).inc()

    def facts(self) -> dict[str, Any]:
        return self.tables

    def as_of(self) -> dict[str, Any]:
        return {"positions": positions_by_topic(dict(self.positions.items())), "records": self.version}

    def view(self, name: str, compute: Callable[[], Any], *params) -> Any:
        if not self.ready()[0]:
            self._cache_version = -1  # recovery fills the tables without applying records: drop the cache
            return compute()
        if self._cache_version != self.version:
            self._cache, self._cache_version = {}, self.version
        key = (name, *params)
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def waiting_for_partitions(self) -> bool:
        recovery = self.app.tables.recovery
        return not recovery.completed.is_set() and not recovery.in_recovery

    def ready(self) -> tuple[bool, str]:
        recovery = self.app.tables.recovery
        if self.waiting_for_partitions():
            return False, "recovering tables from their changelogs: waiting for its partitions"
        if not recovery.completed.is_set():   # how far, so a slow recovery is told from a stuck one
            return False, f"recovering tables from their changelogs: {recovery.active_remaining_total()} records to go"
        if self.app.rebalancing:
            return False, "rebalancing"
        return True, "ready"


def broker_urls(bootstrap: str) -> list[str]:
    return [b if "://" in b else f"kafka://{b}" for b in bootstrap.split(",") if b]


def create_app(bootstrap: str, *, app_id: str = DEFAULT_APP_ID, web_port: int = 6066,
               data_dir: Path = Path(".salesbus/analytics"), partitions: int = 3,
               clock: Clock | None = None, producer_batch: int = 1) -> tuple[faust.App, Analytics]:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id, broker=broker_urls(bootstrap), store="memory://", datadir=str(Path(data_dir) / app_id),
        autodiscover=False, web_enabled=True, web_port=web_port, web_bind="127.0.0.1", web_host="127.0.0.1",
        topic_partitions=partitions, table_standby_replicas=0, consumer_auto_offset_reset="earliest",
        # Tansu (the embedded broker) answers ListOffsets with the LAST BATCH's base offset + 1, so
        # table recovery would stop short of the changelog's tail: one record per batch keeps the
        # reported end exact. On a real Kafka cluster this can be raised (Settings.analytics_batch).
        producer_max_batch_size=producer_batch,
        # Tansu completes a group join after about half the session timeout: keep it short.
        broker_session_timeout=6.0, broker_heartbeat_interval=1.0,
    )
    analytics = Analytics(app, clock or clock_from_env())
    source = app.topic(*TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", allow_empty=True)

    # concurrency=1: records are applied strictly in offset order, so faust never has an acked
    # record ahead of an in-flight one to commit past (faust-streaming #606).
    @app.agent(source, concurrency=1, name="analytics.consume")
    async def consume(stream):
        async for event in stream.events():
            await analytics.handle(event)

    @app.timer(5.0)
    async def refresh_metrics():
        metrics.refresh(analytics)

    from services.analytics.views import register
    register(app, analytics)
    return app, analytics


def run(bootstrap: str, *, web_port: int = 6066, app_id: str = DEFAULT_APP_ID,
        data_dir: Path = Path(".salesbus/analytics"), partitions: int = 3, metrics_port: int | None = None,
        loglevel: str = "info", producer_batch: int = 1) -> None:
    """Run the analytics worker until SIGTERM/SIGINT (blocks; exits the process when done)."""
    app, analytics = create_app(bootstrap, app_id=app_id, web_port=web_port, data_dir=data_dir,
                                partitions=partitions, producer_batch=producer_batch)
    worker = faust.Worker(app, loglevel=loglevel)
    from services.analytics import watchdog
    watchdog.start(analytics.waiting_for_partitions)
    if metrics_port is not None:
        from runtime.metrics import HealthServer
        HealthServer(metrics_port, lambda: not worker.should_stop, analytics.ready, service="analytics").start()
    worker.execute_from_commandline()
