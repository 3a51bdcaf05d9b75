"""The operator's health page reads each service's /readyz and /metrics: lag, outbox backlog and
parked records summed over topics and partitions (a local HTTP server stands for a metrics port)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.web.ops import _scrape

METRICS = """# HELP salesbus_consumer_lag High watermark minus committed position
salesbus_consumer_lag{partition="0",service="orders",topic="OrderPlaced"} 3.0
salesbus_consumer_lag{partition="1",service="orders",topic="OrderPlaced"} 4.0
salesbus_outbox_backlog{service="orders"} 12.0
salesbus_retry_records{service="orders",state="retrying"} 2.0
salesbus_retry_records{service="orders",state="waiting"} 5.0
salesbus_stalled_seconds{loop="consumer",service="orders"} 7.5
salesbus_outbox_backlog_other{service="orders"} 99.0
"""


def serve(ready_status: int):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (METRICS if self.path == "/metrics" else "degraded: consumer retrying").encode()
            self.send_response(200 if self.path == "/metrics" else ready_status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_lag_backlog_and_parked_records_are_summed_and_readiness_reported():
    server = serve(503)
    try:
        found = _scrape(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert found == {"ready": False, "ready_detail": "degraded: consumer retrying", "backlog": 12, "lag": 7,
                     "stalled": 7.5, "parked": 7}


def test_a_metrics_port_that_does_not_answer_is_reported_not_raised():
    server = serve(200)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    found = _scrape(f"http://127.0.0.1:{port}")
    assert found["ready"] is False and found["ready_detail"]
