"""The dashboard and alert rules of deploy/ against running service processes: each service as a
container runs it (`salesbus run NAME`, analytics as `python -m services.analytics`), each its own
process, on a stack of its own (the session's broker and database are shared by tests that expect
no other consumer in their groups).

- every metric the Grafana dashboard and the alert rules select is on some service's /metrics (a
  counter that has counted nothing yet still shows its HELP/TYPE lines, so the names are there from
  the first scrape);
- a real Prometheus (Debian's `prometheus`, when installed) scraping them loads the rules and
  evaluates them without error, and answers every dashboard query."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from runtime.config import SERVICES
from runtime.embedded import EmbeddedStack, _die_with_parent, free_port, wait_for_port
from tests.conftest import wait_until
from tests.ops_queries import PROMETHEUS_OWN, RULES, dashboard_queries, referenced_metrics, sample_names

# a second whole stack and a real Prometheus: make test-slow; make test keeps
# tests/unit/test_ops_as_code.py (promtool, and every referenced metric defined by the code)
pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
NAMES = SERVICES + ("analytics",)


@dataclass
class Running:
    tmp: Path
    ports: dict[str, tuple[int, int]]   # name -> (metrics port, http port)


def _spawn(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=partial(_die_with_parent, signal.SIGKILL))


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _start(name: str, stack: EmbeddedStack, tmp: Path, metrics_port: int, http_port: int) -> subprocess.Popen:
    env = {**os.environ, **stack.env(), "SALESBUS_METRICS_PORT": str(metrics_port),
           "SALESBUS_HTTP_PORT": str(http_port), "SALESBUS_API_KEYS_FILE": str(tmp / "api_keys.json")}
    if name == "analytics":
        cmd = [sys.executable, "-m", "services.analytics", "--metrics-port", str(metrics_port),
               "--web-port", str(http_port), "--data-dir", str(tmp / "analytics"), "--loglevel", "warning"]
    else:
        cmd = [str(BIN / "salesbus"), "run", name]
    return _spawn(cmd, tmp / f"{name}.log", env)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def _metrics(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


@pytest.fixture(scope="module")
def running():
    tmp = Path(tempfile.mkdtemp(prefix="salesbus-ops-metrics-"))
    (tmp / "api_keys.json").write_text("{}")
    stack = EmbeddedStack(tmp / "stack").start()
    procs: dict[str, subprocess.Popen] = {}
    ports = {name: (free_port(), free_port()) for name in NAMES}
    try:
        for name in NAMES:
            procs[name] = _start(name, stack, tmp, *ports[name])

        def all_ready() -> bool:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited: {(tmp / f'{name}.log').read_text()[-3000:]}"
            return all(_ready(ports[n][0]) for n in NAMES)
        wait_until(all_ready, timeout=240, interval=1, message="every service process ready")
        yield Running(tmp, ports)
    finally:
        _stop(list(procs.values()))
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_metric_the_dashboard_and_alerts_use_is_on_some_services_metrics(running):
    ports = running.ports
    # one real request: the cart counts it by route template and status
    status = httpx.get(f"http://127.0.0.1:{ports['cart'][1]}/products/no-such-sku", timeout=10).status_code
    exported: dict[str, set[str]] = {}
    texts = {name: _metrics(ports[name][0]) for name in NAMES}
    for name, text in texts.items():
        for family in text_string_to_metric_families(text):
            for series in sample_names(family.name, family.type):
                exported.setdefault(series, set()).add(name)

    missing = {metric: sorted(where) for metric, where in referenced_metrics().items()
               if metric not in PROMETHEUS_OWN and metric not in exported}
    assert not missing, f"selected in deploy/ but exported by no service: {missing}"

    for name in SERVICES:   # salesbus_ready says what /readyz said
        assert f'salesbus_ready{{service="{name}"}} 1.0' in texts[name], name
    assert exported["salesbus_emails_total"] == {"notifications"}
    assert (f'salesbus_http_requests_total{{method="GET",route="/products/{{sku}}",service="cart",'
            f'status="{status}"}} 1.0') in texts["cart"], texts["cart"][-3000:]


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not on PATH: install Debian's `prometheus` package "
                                               "(`make test` does, as root)")
def test_a_real_prometheus_loads_the_rules_and_answers_every_dashboard_query(running):
    tmp = running.tmp
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": "salesbus", "static_configs": [
                  {"targets": [f"127.0.0.1:{metrics}" for metrics, _ in running.ports.values()]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = _spawn([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                   f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.log")
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for_port(port, 60, f"Prometheus (log {tmp / 'prometheus.log'})", proc)

        def query(expr: str) -> list[dict]:
            r = httpx.get(f"{api}/query", params={"query": expr}, timeout=30)
            if r.status_code == 503:  # "Service Unavailable" while its TSDB is still opening
                return []
            body = r.json()
            assert body["status"] == "success", (expr, body)
            return body["data"]["result"]

        # every target scraped and up; every service process ready
        wait_until(lambda: len(query('up{job="salesbus"} == 1')) == len(running.ports), timeout=60,
                   message="Prometheus to scrape every service")
        wait_until(lambda: {r["metric"].get("service") for r in query("salesbus_ready == 1")} >= set(SERVICES),
                   timeout=60, message="salesbus_ready 1 for every service")

        for q in dashboard_queries():
            query(q.expr)   # answered without error (an empty result is fine: nothing counted yet)
        assert query('sum by (service) (salesbus_outbox_backlog)'), "the relays report their backlog"

        # the rules are loaded and evaluated without error, and nothing fires on a healthy stack
        def evaluated():
            groups = httpx.get(f"{api}/rules", timeout=30).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
        rules = wait_until(evaluated, timeout=60, message="every rule evaluated once")
        assert {r["name"] for r in rules} == {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
                                              for r in g["rules"]}
        assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
        assert [r["name"] for r in rules if r["state"] != "inactive"] == []
    finally:
        _stop([proc])
