"""What a service is (handlers, migrations, optional HTTP API and background workers) and how
one process of it runs: migrate, then relay + consumer + workers + HTTP, until told to stop."""
from __future__ import annotations

import importlib
import logging
import signal
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool

from runtime import db
from runtime.clock import Clock, clock_from_settings
from runtime.config import Settings, settings as load_settings
from runtime.consumer import ConsumerLoop, Handler
from runtime.containment import Stalls, guarded_loop
from runtime.inject import inject
from runtime.retries import RetryPolicy, RetryWorker
from runtime.metrics import HealthServer
from runtime.relay import OutboxRelay
from runtime.topics import ensure_topics
from runtime.uow import UnitOfWork, unit_of_work

log = logging.getLogger(__name__)


@dataclass
class Service:
    name: str
    #: event type (= topic) -> handler(event, uow, *, <dependencies by name>): the service's
    #: `HANDLERS` table at the foot of its handlers.py
    handlers: dict[str, Handler] = field(default_factory=dict)
    migrations: Path | None = None
    #: builds the FastAPI app, given the running context
    http_app: Callable[["ServiceContext"], Any] | None = None
    #: background loops (timers, simulators): each gets the context and returns when ctx.stopping is set
    workers: list[Callable[["ServiceContext"], None]] = field(default_factory=list)
    #: what this service has set aside for good, for operators (`salesbus set-aside`):
    #: name -> SQL over its own tables returning rows with at least (id, reason, at)
    set_aside: dict[str, str] = field(default_factory=dict)
    #: work queued in this service's own tables (`salesbus status`): name -> SQL returning one row
    #: (count, age in seconds of the oldest item or NULL)
    backlogs: dict[str, str] = field(default_factory=dict)
    #: what handlers (and the HTTP app and workers, through ctx.dependencies) are given, built
    #: once per process from its context: name -> object (a card gateway, a policy read from
    #: Settings). Handlers receive them as keyword-only parameters of the same name.
    dependencies: Callable[["ServiceContext"], dict[str, Any]] | None = None


@dataclass
class ServiceContext:
    service: Service
    settings: Settings
    pool: ConnectionPool
    clock: Clock
    stopping: threading.Event
    #: loops retrying the same work (shown in /readyz and salesbus_stalled_seconds)
    stalls: Stalls = field(default_factory=lambda: Stalls("?"))
    #: the service's dependencies, built once at start (Service.dependencies)
    dependencies: dict[str, Any] = field(default_factory=dict)

    def unit_of_work(self, traceparent: str | None = None) -> AbstractContextManager[UnitOfWork]:
        return unit_of_work(self.pool, source=self.service.name, clock=self.clock, traceparent=traceparent)


def load_service(name: str) -> Service:
    """`cart` -> services.cart.service.SERVICE; `pkg.module:ATTR` for test services."""
    module, _, attr = name.partition(":")
    if "." not in module:
        module = f"services.{module}.service"
    return getattr(importlib.import_module(module), attr or "SERVICE")


class ServiceProcess:
    def __init__(self, service: Service, cfg: Settings | None = None, clock: Clock | None = None,
                 database_url: str | None = None):
        self.service = service
        self.cfg = cfg or load_settings()
        self.database_url = database_url or self.cfg.database_for(service.name)
        self.kafka_conf = self.cfg.kafka_common()
        self.stopping = threading.Event()
        self.clock = clock or clock_from_settings(self.cfg)
        self.threads: list[threading.Thread] = []
        self.loops: list[Any] = []
        self.crashed = False

    def start(self) -> ServiceContext:
        svc = self.service
        db.migrate(self.database_url, svc.migrations)
        ensure_topics(self.kafka_conf, self.cfg.topic_partitions, self.cfg.topic_replication)
        self.pool = db.make_pool(self.database_url, max_size=self.cfg.db_pool_max, name=svc.name)
        self.stalls = Stalls(svc.name)
        self.ctx = ServiceContext(svc, self.cfg, self.pool, self.clock, self.stopping, self.stalls)
        try:  # a handler asking for what nobody provides stops the process here, before any event
            self.ctx.dependencies = svc.dependencies(self.ctx) if svc.dependencies else {}
            handlers = inject(svc.handlers, self.ctx.dependencies, service=svc.name)
        except Exception:
            self.pool.close()
            raise
        relay = OutboxRelay(svc.name, self.database_url, self.kafka_conf, stalls=self.stalls)
        self.loops.append(relay)
        self._spawn(relay.run, "relay")
        if handlers:
            consumer = ConsumerLoop(svc.name, handlers, self.pool, self.clock, self.kafka_conf,
                                    batch_size=self.cfg.batch_size, batch_timeout_s=self.cfg.batch_timeout_s,
                                    backoff_max_s=self.cfg.retry_backoff_max_s,
                                    session_timeout_ms=self.cfg.kafka_session_timeout_ms, stalls=self.stalls,
                                    fetch_wait_max_ms=self.cfg.kafka_fetch_wait_max_ms)
            self.loops.append(consumer)
            self._consumer = consumer
            self._spawn(consumer.run, "consumer")
            retry = RetryWorker(consumer.processor, self.pool, RetryPolicy(
                cap_s=self.cfg.retry_backoff_cap_s, window_s=self.cfg.retry_window_s,
                inbox_retention_s=self.cfg.inbox_retention_s))
            self._spawn(lambda: guarded_loop(svc.name, "retry", retry.step, self.stopping, stalls=self.stalls,
                                             idle_s=0.5), "retry")
        for worker in svc.workers:
            self._spawn(lambda w=worker: w(self.ctx), getattr(worker, "__name__", "worker"))
        if self.cfg.metrics_port is not None:
            self.health = HealthServer(self.cfg.metrics_port, self.alive, self.ready,
                                       before_scrape=self.stalls.refresh, service=svc.name,
                                       host=self.cfg.bind_host).start()
        return self.ctx

    def consumer_processor(self):
        """The batch processor of this process's consumer (the retry worker and tests use it)."""
        return self._consumer.processor

    def _spawn(self, target, name: str) -> None:
        def guarded():
            try:
                target()
            except Exception:
                log.exception("%s: %s loop crashed; stopping the process so the supervisor restarts it",
                              self.service.name, name)
                self.crashed = True
                self.stopping.set()
        t = threading.Thread(target=guarded, name=f"{self.service.name}-{name}", daemon=True)
        t.start()
        self.threads.append(t)

    def alive(self) -> bool:
        return not self.stopping.is_set() and all(t.is_alive() for t in self.threads)

    def ready(self) -> tuple[bool, str]:
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            return False, f"database unreachable: {exc}"
        try:
            AdminClient(self.kafka_conf).list_topics(timeout=2)
        except Exception as exc:
            return False, f"broker unreachable: {exc}"
        self.stalls.refresh()
        stall = self.stalls.longest()
        if stall is not None and stall[1] >= self.cfg.stall_degraded_after_s:
            loop, seconds, reason = stall
            return False, f"degraded: {loop} retrying the same work for {seconds:.0f}s: {reason}"
        return True, "ready"

    def stop(self) -> None:
        self.stopping.set()
        for loop in self.loops:
            loop.stop()
        for t in self.threads:
            t.join(timeout=10)
            if t.is_alive():
                log.warning("%s: thread %s still running 10 s after the stop; leaving it", self.service.name, t.name)
        self.pool.close()
        if getattr(self, "health", None):
            self.health.stop()


def run_forever(service: Service, cfg: Settings | None = None) -> None:
    """What `salesbus run SERVICE` (and a container) runs. SIGTERM/SIGINT stop it cleanly."""
    proc = ServiceProcess(service, cfg)
    ctx = proc.start()
    log.info("%s started", service.name)
    if service.http_app is not None and proc.cfg.http_port is not None:
        import uvicorn
        server = uvicorn.Server(uvicorn.Config(service.http_app(ctx), host=proc.cfg.bind_host, port=proc.cfg.http_port,
                                               log_level="warning", access_log=False))
        watcher = threading.Thread(target=lambda: (proc.stopping.wait(), setattr(server, "should_exit", True)),
                                   daemon=True)
        watcher.start()
        server.run()  # installs its own SIGTERM/SIGINT handlers
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: proc.stopping.set())
        proc.stopping.wait()
    proc.stopping.set()  # uvicorn may have returned on its own signal
    proc.stop()
    log.info("%s stopped", service.name)
    if proc.crashed:
        raise SystemExit(1)
