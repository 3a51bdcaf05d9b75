"""Restart analytics when faust hangs before it has its partitions.

Seen under CPU load on this 2-core machine (make test's lifecycle test, 2 of 3 CI runs): the
worker logged "Recovery: Starting..." and then nothing for 4 minutes, never joining its group,
so /readyz stayed "waiting for its partitions"; the next start of the same stack joined in about
3 s. A normal join on Tansu takes 3-6 s and a slow changelog recovery is not a hang (it reports
records to go, and is left alone). So: waiting for partitions without a break for LIMIT seconds
ends the process with EXIT_CODE, and its supervisor (`salesbus up`, or Kubernetes) starts it
again, as a liveness probe would.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)
LIMIT_S = 90.0      # 15x a slow join under load; short enough that a restart still meets a 4-minute wait
EXIT_CODE = 75      # EX_TEMPFAIL: try again


class StartWatch:
    """Pure: fed (monotonic time, waiting for partitions?) samples, says when it has hung."""

    def __init__(self, limit: float = LIMIT_S):
        self.limit, self.since = limit, None

    def hung(self, now: float, waiting: bool) -> bool:
        if not waiting:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.limit


def start(waiting: Callable[[], bool], limit: float = LIMIT_S, every: float = 5.0,
          exit_: Callable[[int], None] = os._exit) -> threading.Thread:
    """Watch in a daemon thread (the event loop is what hangs, so the loop cannot watch itself)."""
    watch = StartWatch(limit)

    def loop() -> None:
        while True:
            time.sleep(every)
            if watch.hung(time.monotonic(), waiting()):
                log.error("analytics has waited %.0f s for its partitions (faust hangs so under load): "
                          "exiting %d to be started again", limit, EXIT_CODE)
                logging.shutdown()
                exit_(EXIT_CODE)
                return

    thread = threading.Thread(target=loop, name="analytics-start-watch", daemon=True)
    thread.start()
    return thread
