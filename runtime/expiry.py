"""One worker shape for every service's bounded waits: move what waited too long aside, count it,
log a few, repeat. Each service keeps its own SQL (`move(conn, older_than_s, limit)` returns the
moved rows); this module owns the loop, the batch bound and the metric."""
from __future__ import annotations

import logging
from typing import Callable

from runtime.containment import SET_ASIDE, guarded_loop

log = logging.getLogger(__name__)
#: one pass moves at most this many rows in one transaction; a full batch is followed at once
BATCH = 500
#: seconds between passes: the window is days, an indexed range scan every few seconds costs nothing
POLL_S = 5.0


def expiry_worker(service: str, where: str, move: Callable[..., list[dict]],
                  describe: Callable[[dict], str], *, batch: int = BATCH, poll_s: float = POLL_S) -> Callable:
    def step(ctx) -> bool:
        with ctx.unit_of_work() as uow:
            moved = move(uow.conn, older_than_s=ctx.settings.parked_event_expiry_s, limit=batch)
        if moved:
            SET_ASIDE.labels(service, where, "expired").inc(len(moved))
            for row in moved[:10]:
                log.warning("%s: %s expired: %s", service, describe(row), row["reason"])
            if len(moved) > 10:
                log.warning("%s: ... and %d more %s expired", service, len(moved) - 10, where)
        return len(moved) >= batch

    def worker(ctx) -> None:
        guarded_loop(service, "parked expiry", lambda: step(ctx), ctx.stopping, stalls=ctx.stalls, idle_s=poll_s)

    worker.__name__ = "parked_expiry"
    worker.step = step
    return worker
