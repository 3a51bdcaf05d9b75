"""Runs real services in the test process: each with its own database, consumer group, outbox
relay and (when it has one) HTTP API served by uvicorn on a free port, all on the session's
embedded broker and PostgreSQL. Started once per test session, on first use.

Below it, the handler tier's harness (`ServiceDB`): one service's handlers, workers and HTTP API
on a private migrated database per test, with a clock of its own, and no broker."""
from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import httpx
import psycopg
from psycopg_pool import ConnectionPool

from runtime import db
from runtime.auth import KeyRing, issue_key
from runtime.batch import BatchProcessor
from runtime.clock import Clock, OffsetClock
from runtime.config import Settings, with_dbname
from runtime.containment import Stalls
from runtime.embedded import free_port, wait_for_port
from runtime.record import Record
from runtime.retries import RetryWorker
from runtime.service import Service, ServiceContext, ServiceProcess, load_service
from runtime.uow import UnitOfWork, unit_of_work
from schemas import REGISTRY, Event, envelope, parse_record, to_record
from schemas.envelope import CloudEvent, InvalidRecord


class Harness:
    def __init__(self, cfg: Settings, data_dir: Path):
        self.cfg = cfg
        self.clock = OffsetClock()
        self.keys_file = data_dir / "api_keys.json"
        self.keys_file.write_text("{}")
        os.environ["SALESBUS_API_KEYS_FILE"] = str(self.keys_file)
        self.procs: dict[str, ServiceProcess] = {}
        self.urls: dict[str, str] = {}
        self.servers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self, *names: str) -> None:
        for name in names:
            with self._lock:
                if name not in self.procs:
                    self._start(name)

    def _start(self, name: str) -> None:
        import uvicorn

        svc = load_service(name)
        proc = ServiceProcess(svc, self.cfg, self.clock)
        ctx = proc.start()
        self.procs[name] = proc
        if svc.http_app is not None:
            port = free_port()
            app = svc.http_app(ctx)
            app.state.keyring = KeyRing(path=self.keys_file)
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            server.install_signal_handlers = lambda: None
            threading.Thread(target=server.run, daemon=True, name=f"{name}-http").start()
            wait_for_port(port, 15, f"{name} HTTP API")
            self.servers[name] = server
            self.urls[name] = f"http://127.0.0.1:{port}"

    def key(self, role: str, subject: str, email: str | None = None) -> dict[str, str]:
        """Authorization headers for a new principal."""
        return {"Authorization": f"Bearer {issue_key(self.keys_file, role, subject, email)}"}

    def client(self, service: str, role: str, subject: str, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.urls[service], headers=self.key(role, subject, kw.pop("email", None)),
                            timeout=30, **kw)

    def stop(self, *names: str) -> None:
        """Stop these services (every one when none is named); a later start() starts them afresh."""
        with self._lock:
            names = names or tuple(self.procs)
            for name in names:
                if name in self.servers:
                    self.servers.pop(name).should_exit = True
                    self.urls.pop(name, None)
            time.sleep(0.2)
            procs = [self.procs.pop(name) for name in names if name in self.procs]
            # together: each takes about 2 s (its consumer leaving the group), one after another
            # 12 s for the whole stack
            with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
                list(pool.map(ServiceProcess.stop, procs))


# --- the handler tier (tests/handlers): a service's code on a database of the test's own --------

#: Envelope fields `ServiceDB.run` takes for itself; every other keyword is a handler dependency.
ENVELOPE_ARGS = ("event_id", "source", "time")


@dataclass(frozen=True)
class Emitted:
    """One outbox row, decoded: `event` is the typed payload (None when the bytes are not an
    event, as a dead letter of a bad record may be)."""
    id: str
    topic: str
    key: str
    headers: dict[str, str]
    envelope: CloudEvent | None
    event: Event | None

    @property
    def data(self) -> dict:
        return self.envelope.data if self.envelope else {}


def bind(handler: Callable, deps: dict[str, Any]) -> Callable[[Event, UnitOfWork], None]:
    """`handler(event, uow)` with the dependencies it declares taken from `deps` by parameter
    name (as the process's assembly does); names it does not declare are left out, so one test
    serves a handler before and after it gained or lost a dependency. A required dependency
    missing from `deps` is a TypeError here, not a dead letter in the test's inbox."""
    params = list(inspect.signature(handler).parameters.values())[2:]
    wanted = {p.name: deps[p.name] for p in params if p.name in deps}
    missing = [p.name for p in params if p.name not in deps and p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise TypeError(f"{getattr(handler, '__qualname__', handler)} needs {missing}: pass them to run()")
    return functools.partial(handler, **wanted) if wanted else handler


class ServiceDB:
    """A migrated database of one service, private to one test, with a clock of its own.

    `run(handler, event)` delivers the event as the consumer does (runtime.batch: the inbox,
    the handler in the batch's transaction, the outbox, dead-lettering and parking) and returns
    what that put in the outbox. `context()` and `api()` give the service's workers and HTTP API
    the same database and clock; nothing here touches Kafka."""

    def __init__(self, service: Service, url: str, cfg: Settings, keys_file: Path, deps: dict[str, Any]):
        self.service, self.url, self.cfg, self.keys_file = service, url, cfg, keys_file
        self.clock = OffsetClock()
        self.deps = deps
        self.pool = db.make_pool(url, max_size=4, name=f"{service.name}-private")
        self.pool.wait(30)
        self._offset = 0
        self._servers: list = []
        self._assembled: dict[str, Any] | None = None

    # -- events in, events out -------------------------------------------------------------

    def run(self, handler: Callable, event: Event, *, event_id: str | None = None, source: str = "upstream-test",
            time: datetime | None = None, **deps) -> list[Emitted]:
        bound = bind(handler, self.dependencies(**deps))
        ce = envelope(event, source=source, event_id=event_id, time=time)
        key, value, headers = to_record(ce)
        self._offset += 1
        record = Record(ce.type, 0, self._offset, key.encode(), value, tuple((k, v.encode()) for k, v in headers.items()))
        before = self._last_outbox_id()
        BatchProcessor(self.service.name, {ce.type: bound}, self.pool, self.clock).process([record])
        return self.outbox(after=before)

    def deliver(self, event: Event, **kw) -> list[Emitted]:
        """`run` with the handler the service's own table names for the event's topic."""
        return self.run(self.service.handlers[event.event_type()], event, **kw)

    def retry_parked(self, *, max_steps: int = 20, **deps) -> list[Emitted]:
        """What the retry worker (runtime.retries) does with the records parked to retry, each
        taken as soon as it is parked (the test does not wait out the backoff); returns what the
        retries put in the outbox."""
        handlers = {topic: bind(h, self.dependencies(**deps)) for topic, h in self.service.handlers.items()}
        worker = RetryWorker(BatchProcessor(self.service.name, handlers, self.pool, self.clock), self.pool)
        before = self._last_outbox_id()
        for _ in range(max_steps):
            self.query("UPDATE retry_records SET next_attempt_at = now() WHERE state IN ('retrying', 'waiting')")
            if not worker.step():
                break
        return self.outbox(after=before)

    def call(self, handler: Callable, event: Event, uow: UnitOfWork, **deps) -> None:
        """The handler alone, in a unit of work the test holds (for races between transactions)."""
        bind(handler, self.dependencies(**deps))(event, uow)

    def outbox(self, topic: str | None = None, key: str | None = None, *, after: int = 0) -> list[Emitted]:
        rows = self.query("""SELECT event_id, topic, key, value, headers FROM outbox
                             WHERE id > %s AND (%s::text IS NULL OR topic = %s) AND (%s::text IS NULL OR key = %s)
                             ORDER BY id""", (after, topic, topic, key, key))
        return [_emitted(r) for r in rows]

    def _last_outbox_id(self) -> int:
        return self.query("SELECT coalesce(max(id), 0) AS id FROM outbox")[0]["id"]

    def inbox_outcome(self, event_id: str) -> str | None:
        rows = self.query("SELECT outcome FROM inbox WHERE event_id = %s", (event_id,))
        return rows[0]["outcome"] if rows else None

    # -- the rest of the service on the same database ----------------------------------------

    def query(self, sql: str, params=()) -> list[dict]:
        with self.pool.connection() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def uow(self, pool: ConnectionPool | None = None):
        return unit_of_work(pool or self.pool, source=self.service.name, clock=self.clock)

    def dependencies(self, **overrides) -> dict[str, Any]:
        """What the handlers are given: the service's own assembly (`Service.dependencies(ctx)`,
        where the service has one), then the test's (the tier's defaults, the fixture's, the call's)."""
        if self._assembled is None:
            hook = getattr(self.service, "dependencies", None)
            self._assembled = dict(hook(self._bare_context())) if callable(hook) else {}
        return {**self._assembled, **self.deps, **overrides}

    def _bare_context(self, clock: Clock | None = None, **settings) -> ServiceContext:
        cfg = self.cfg.model_copy(update=settings) if settings else self.cfg
        return ServiceContext(self.service, cfg, self.pool, clock or self.clock, threading.Event(),
                              Stalls(self.service.name))

    def context(self, clock: Clock | None = None, **settings) -> ServiceContext:
        """The running context workers and the HTTP app get: this database and clock, the session's
        settings (with `settings` changed), and the same dependencies as `run`."""
        ctx = self._bare_context(clock, **settings)
        ctx.dependencies = self.dependencies()
        return ctx

    def api(self, role: str, subject: str, email: str | None = None, **settings):
        """The service's HTTP API in-process (FastAPI's TestClient), as `role` acting for `subject`."""
        from fastapi.testclient import TestClient

        app = self.service.http_app(self.context(**settings))
        app.state.keyring = KeyRing(path=self.keys_file)
        key = self.key(role, subject, email)
        return TestClient(app, headers={"Authorization": f"Bearer {key}"})

    def serve(self, **settings) -> str:
        """The HTTP API on a real port (for clients that dial a URL, like the CLIs); stopped by close()."""
        import uvicorn

        app = self.service.http_app(self.context(**settings))
        app.state.keyring = KeyRing(path=self.keys_file)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        server.install_signal_handlers = lambda: None
        thread = threading.Thread(target=server.run, daemon=True, name=f"{self.service.name}-private-http")
        thread.start()
        wait_for_port(port, 15, f"{self.service.name} HTTP API")
        self._servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    def key(self, role: str, subject: str, email: str | None = None) -> str:
        return issue_key(self.keys_file, role, subject, email)

    def close(self) -> None:
        for server, thread in self._servers:
            server.should_exit = True
            thread.join(10)
        self.pool.close()


def _emitted(row: dict) -> Emitted:
    value = bytes(row["value"]) if row["value"] is not None else None
    try:
        ce, event = parse_record(value, REGISTRY)
    except InvalidRecord:
        ce, event = None, None
    return Emitted(row["event_id"], row["topic"], row["key"], row["headers"], ce, event)


class PrivateDatabases:
    """Per test, a database of the service's own, made from a template migrated once per session
    (`CREATE DATABASE ... TEMPLATE` copies files: milliseconds, where migrating takes a second)."""

    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self._templates: set[str] = set()
        self._lock = threading.Lock()

    def _admin(self):
        return psycopg.connect(with_dbname(self.cfg.database_url, "postgres"), autocommit=True)

    def _template(self, service: Service) -> str:
        name = f"template_{service.name}"
        with self._lock:
            if name not in self._templates:
                with self._admin() as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                db.migrate(with_dbname(self.cfg.database_url, name), service.migrations)
                self._templates.add(name)
        return name

    def create(self, service: Service) -> str:
        template = self._template(service)
        name = f"{service.name}_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            # A test's database need not survive a crash of the server: commits skip the WAL flush.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        return name

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
