"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints of every service process."""
from __future__ import annotations

import logging
import threading
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
CONSUMER_LAG = Gauge("salesbus_consumer_lag", "High watermark minus committed position", ["service", "topic", "partition"])


class HealthServer:
    """Serves /metrics, /healthz (process alive, loops running) and /readyz (broker and DB reachable)."""

    def __init__(self, port: int, alive: Callable[[], bool], ready: Callable[[], tuple[bool, str]]):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path == "/metrics":
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

        self.alive, self.ready = alive, ready
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
