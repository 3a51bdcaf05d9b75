"""Runs real services in the test process: each with its own database, consumer group, outbox
relay and (when it has one) HTTP API served by uvicorn on a free port, all on the session's
embedded broker and PostgreSQL. Started once per test session, on first use."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx

from runtime.auth import KeyRing, issue_key
from runtime.clock import OffsetClock
from runtime.config import Settings
from runtime.embedded import free_port, wait_for_port
from runtime.service import ServiceProcess, load_service


class Harness:
    def __init__(self, cfg: Settings, data_dir: Path):
        self.cfg = cfg
        self.clock = OffsetClock()
        self.keys_file = data_dir / "api_keys.json"
        self.keys_file.write_text("{}")
        os.environ["SALESBUS_API_KEYS_FILE"] = str(self.keys_file)
        self.procs: dict[str, ServiceProcess] = {}
        self.urls: dict[str, str] = {}
        self.servers: list = []
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
            self.servers.append(server)
            self.urls[name] = f"http://127.0.0.1:{port}"

    def key(self, role: str, subject: str, email: str | None = None) -> dict[str, str]:
        """Authorization headers for a new principal."""
        return {"Authorization": f"Bearer {issue_key(self.keys_file, role, subject, email)}"}

    def client(self, service: str, role: str, subject: str, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.urls[service], headers=self.key(role, subject, kw.pop("email", None)),
                            timeout=30, **kw)

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        time.sleep(0.2)
        for proc in self.procs.values():
            proc.stop()
