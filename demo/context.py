"""What every demo flow gets: the running system, API clients with keys, the shared clock, the mailbox."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from runtime.auth import issue_key
from runtime.clock import FileClock
from runtime.config import Settings
from runtime.embedded import EmbeddedStack, read_mail
from runtime.supervisor import Supervisor
from runtime.tap import tap


@dataclass
class DemoContext:
    stack: EmbeddedStack
    supervisor: Supervisor
    console: Console
    clock: FileClock
    keys_file: Path
    failures: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> Settings:
        return Settings(kafka_bootstrap=self.stack.broker.bootstrap, database_url=self.stack.postgres.url)

    def client(self, service: str, role: str, subject: str, email: str | None = None) -> httpx.Client:
        key = issue_key(self.keys_file, role, subject, email)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.supervisor.port(service)}",
                            headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def mail(self) -> list:
        return read_mail(self.stack.mail.maildir)

    def records(self, topics: list[str]) -> list[dict]:
        """Every event so far on these topics (CloudEvent dicts plus topic/key)."""
        out = []
        for rec in tap(self.cfg.kafka_common(), topics, follow=False, idle_exit_s=1.0):
            ev = rec.event()
            if ev is not None:
                out.append({**ev, "_topic": rec.topic, "_key": rec.key, "_headers": rec.headers,
                            "_timestamp_ms": rec.timestamp_ms})
        return out

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "") -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.25)
        self.failures.append(f"timed out waiting for {what}")
        self.console.print(f"[red]timed out waiting for {what}[/red]")
        return False

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
            self.console.print(f"[red]✗ {what}[/red]")
        return ok
