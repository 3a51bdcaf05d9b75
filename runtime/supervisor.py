"""`salesbus up`: every service as its own process, restarted when it crashes, logs to files."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.config import SERVICES
from runtime.embedded import EmbeddedStack, _die_with_parent, free_port

log = logging.getLogger(__name__)
# analytics is a faust app, not a runtime service: it has its own entry point
COMMANDS = {"analytics": [sys.executable, "-m", "services.analytics", "--app-id", "analytics"]}


@dataclass
class Child:
    name: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        logf = open(self.log_path, "ab")
        # A child gets SIGTERM when the supervisor dies, however it dies (kill -9 included), and
        # stops as it would on `salesbus up`'s own SIGTERM: nothing runs on as an orphan. Analytics
        # gets SIGKILL: faust ignores SIGTERM while it rebuilds its tables (seen: orphans left
        # running for minutes), and a kill is safe for it (a replay changes no table: first fact wins).
        death = signal.SIGKILL if self.name == "analytics" else signal.SIGTERM
        self.proc = subprocess.Popen(COMMANDS.get(self.name, [sys.executable, "-m", "runtime.cli", "run", self.name]),
                                     env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: _die_with_parent(death))
        logf.close()
        self.started_at = time.monotonic()


class Supervisor:
    def __init__(self, stack: EmbeddedStack, services: tuple[str, ...] = SERVICES,
                 extra_env: dict[str, str] | None = None, report=print, ports: dict[str, int] | None = None):
        """ports: fixed addresses (runtime.ports keys such as "cart.http"); free ports when None."""
        self.stack, self.report = stack, report
        self.children: dict[str, Child] = {}
        base = {**os.environ, **stack.env(), **(extra_env or {})}
        for name in services:
            own = {kind: ports[f"{name}.{kind}"] if ports else free_port() for kind in ("http", "metrics")}
            env = {**base, "SALESBUS_HTTP_PORT": str(own["http"]), "SALESBUS_METRICS_PORT": str(own["metrics"])}
            self.children[name] = Child(name, env, stack.data_dir / "logs" / f"{name}.log", ports=own)

    def start(self) -> None:
        for child in self.children.values():
            child.start()
        info = json.loads(self.stack.info_path.read_text())
        info["services"] = {n: c.ports for n, c in self.children.items()}
        self.stack.info_path.write_text(json.dumps(info, indent=2))

    def check(self) -> None:
        """Restart crashed children, with a pause if one keeps crashing."""
        for child in self.children.values():
            code = child.proc.poll() if child.proc else None
            if code is None:
                continue
            child.restarts += 1
            self.report(f"[supervisor] {child.name} exited with code {code}; restarting "
                        f"(restart #{child.restarts}, log: {child.log_path})")
            if time.monotonic() - child.started_at < 5:
                time.sleep(min(5, child.restarts))
            child.start()

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to every child at once, SIGKILL to any still running after grace_s: a service
        that has not finished its batch by then abandons it uncommitted (redelivered at next start)."""
        for child in self.children.values():
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            if child.proc:
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.proc.kill()

    def port(self, service: str, kind: str = "http") -> int:
        return self.children[service].ports[kind]
