"""Every service process serves /metrics, /healthz and /readyz; ready only when the broker and
its database answer."""
from __future__ import annotations

import httpx
import psycopg
import pytest

from runtime.clock import WallClock
from runtime.config import with_dbname
from runtime.embedded import free_port
from runtime.service import ServiceProcess
from tests.conftest import wait_until
from tests.integration import probe_service
from tests.integration.test_runtime_promises import order, times

pytestmark = pytest.mark.integration


def test_metrics_and_readiness_follow_the_database_and_the_broker(cfg, bus, stack, unique):
    name = f"probe_health_{unique}"
    port = free_port()
    proc = ServiceProcess(probe_service.make(name, ["OrderPlaced"]), cfg.model_copy(update={"metrics_port": port}),
                          WallClock())
    proc.start()
    base = f"http://127.0.0.1:{port}"
    try:
        event_id = bus.publish(order(f"o-{unique}"))
        bus.publish(order(f"o-{unique}"), event_id=event_id)
        wait_until(lambda: times(cfg, name, f"o-{unique}") == 1, timeout=60)
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200

        def metric(line_start: str) -> float:
            for line in httpx.get(f"{base}/metrics").text.splitlines():
                if line.startswith(line_start):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0
        label = f'{{service="{name}",topic="OrderPlaced"}}'
        wait_until(lambda: metric(f"salesbus_duplicates_skipped_total{label}") >= 1, timeout=30,
                   message="the redelivered copy to be counted as a duplicate")
        assert metric(f"salesbus_records_consumed_total{label}") >= 2
        assert metric(f"salesbus_events_handled_total{label}") >= 1
        lines = httpx.get(f"{base}/metrics").text.splitlines()
        for family in ("salesbus_batch_size_bucket", "salesbus_batch_handling_seconds_bucket",
                       "salesbus_outbox_backlog", "salesbus_outbox_oldest_age_seconds"):
            assert any(ln.startswith(family + "{") and f'service="{name}"' in ln for ln in lines), family

        # database unreachable -> not ready; back -> ready
        with psycopg.connect(with_dbname(cfg.database_url, "postgres"), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            try:
                wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 503, timeout=30,
                           message="not ready while the database refuses connections")
                assert "database" in httpx.get(f"{base}/readyz", timeout=10).text
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, timeout=30)

        # broker frozen -> not ready; thawed -> ready
        stack.broker.pause()
        try:
            response = httpx.get(f"{base}/readyz", timeout=15)
            assert response.status_code == 503 and "broker" in response.text
        finally:
            stack.broker.resume()
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, timeout=30)
        assert not proc.crashed
    finally:
        proc.stop()
