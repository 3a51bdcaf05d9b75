"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints of every service process."""
from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

CONSUMED = Counter("salesbus_records_consumed_total", "Records taken from Kafka", ["service", "topic"])
HANDLED = Counter("salesbus_events_handled_total", "Events whose handler committed", ["service", "topic"])
DUPLICATES = Counter("salesbus_duplicates_skipped_total", "Redelivered events skipped by the inbox", ["service", "topic"])
DEAD_LETTERED = Counter("salesbus_dead_lettered_total", "Records sent to <topic>.DLQ", ["service", "topic", "reason"])
RETRIES = Counter("salesbus_transient_retries_total", "Batches retried after a transient fault", ["service", "stage"])
BATCH_SIZE = Histogram("salesbus_batch_size", "Records per consumed batch", ["service"],
                       buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
HANDLING_SECONDS = Histogram("salesbus_batch_handling_seconds", "Time to handle and commit one batch", ["service"],
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
OUTBOX_BACKLOG = Gauge("salesbus_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("salesbus_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"])
PUBLISHED = Counter("salesbus_outbox_published_total", "Outbox rows published", ["service", "topic"])
REPUBLISHED = Counter("salesbus_outbox_republished_total",
                      "Retained outbox rows queued again because the relay found a new broker (cluster id)", ["service"])
SKIPPED = Counter("salesbus_redrives_skipped_total", "Re-driven records meant for another consumer group", ["service", "topic"])
PARKED = Counter("salesbus_records_parked_total",
                 "Records set aside to retry (retrying) or waiting behind a parked record of their key (waiting)",
                 ["service", "topic", "state"])
RETRIED = Counter("salesbus_parked_retries_total", "Retries of parked records, by result", ["service", "topic", "result"])
RETRY_RECORDS = Gauge("salesbus_retry_records", "Parked records by state", ["service", "state"])
RETRY_OLDEST = Gauge("salesbus_retry_oldest_seconds", "How long the oldest parked record has been failing", ["service"])
INBOX_PRUNED = Counter("salesbus_inbox_pruned_total", "Inbox rows deleted after the retention", ["service"])
OUTBOX_FAILED = Counter("salesbus_outbox_refused_total", "Outbox rows the broker refused for good (kept, not retried)",
                        ["service", "topic", "reason"])
CONSUMER_LAG = Gauge("salesbus_consumer_lag", "High watermark minus committed position", ["service", "topic", "partition"])

# --- For the dashboard and alerts in deploy/ (a "service not ready" alert, checkout rate and errors) ---
READY = Gauge("salesbus_ready", "1 when this process's /readyz answers 200, else 0 (evaluated at every scrape)",
              ["service"])
HTTP_REQUESTS = Counter("salesbus_http_requests_total", "HTTP requests answered, by route template and status",
                        ["service", "method", "route", "status"])
HTTP_SECONDS = Histogram("salesbus_http_request_seconds", "Time to answer one HTTP request", ["service", "route"],
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))


class HttpMetrics:
    """Pure ASGI middleware counting every answer by route *template* (`/carts/{cart_id}/checkout`,
    never the raw path: ids would make the label set unbounded) and status. A request no route
    matched is counted as `unmatched`; an exception the app did not answer counts as 500."""

    def __init__(self, app, service: str):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def counting_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            HTTP_SECONDS.labels(self.service, route).observe(time.perf_counter() - started)


class HealthServer:
    """Serves /metrics, /healthz (process alive, loops running) and /readyz (broker and DB reachable)."""

    def __init__(self, port: int, alive: Callable[[], bool], ready: Callable[[], tuple[bool, str]],
                 before_scrape: Callable[[], None] | None = None, service: str = "?", host: str | None = None):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/metrics":
                    if outer.before_scrape:
                        outer.before_scrape()
                    outer.observe_readiness()
                    return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                if self.path == "/healthz":
                    ok = outer.alive()
                    return self._send(200 if ok else 503, b"ok\n" if ok else b"a loop has stopped\n")
                if self.path == "/readyz":
                    ok, why = outer.ready()
                    return self._send(200 if ok else 503, (why + "\n").encode())
                return self._send(404, b"not found\n")

            def _send(self, status, body, ctype="text/plain; charset=utf-8"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # scrapes every few seconds would drown the log
                pass

        self.alive, self.ready, self.before_scrape, self.service = alive, ready, before_scrape, service
        if host is None:  # SALESBUS_BIND_HOST (runtime/config.py), also for processes that do not pass it
            from runtime.config import settings
            host = settings().bind_host
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def observe_readiness(self) -> None:
        """salesbus_ready: what /readyz would answer now, so an alert can see a process that is up
        (scraped) but not ready (broker or database away, a loop stalled)."""
        try:
            ok, _ = self.ready()
        except Exception:  # noqa: BLE001 - a readiness check that raises is "not ready"
            ok = False
        READY.labels(self.service).set(1 if ok else 0)

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
