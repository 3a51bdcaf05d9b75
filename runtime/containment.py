"""One containment mechanism for every loop of a service (consumer, relay, workers).

Whatever arrives, the rest keeps flowing. Three questions decide what happens to a failure:

- `classify(exc)`: is it the *environment* (the database or broker is away: retry the same work,
  never skip it), the *item* failing for now (a gateway timeout, a lock: set that item aside
  and retry it later with backoff, the others go on), or *permanent* (bad data, a bug: set the
  item aside for good with a storable reason)?
- `storable(text)`: a reason, key or header that can always be written to PostgreSQL (text
  and jsonb refuse NUL; UTF-8 refuses lone surrogates) and has a bound.
- `Stalls`: while a loop keeps retrying the same work the operator sees it: the
  `salesbus_stalled_seconds` gauge grows and `/readyz` says which loop, since when and why.

`guarded_loop` runs a worker's step forever under these rules: an environment fault backs
off and is visible, an unexpected exception is logged, counted and backed off, and the
process never goes down because of one row. Row-level containment (marking a poison row
`failed`) is the worker's own step, using `row_failure` to build the reason.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

import psycopg
from prometheus_client import Counter, Gauge

from runtime.errors import TransientError

log = logging.getLogger(__name__)

STALLED_SECONDS = Gauge("salesbus_stalled_seconds",
                        "Seconds a loop has been retrying the same work (0 when it is flowing)", ["service", "loop"])
LOOP_ERRORS = Counter("salesbus_loop_errors_total",
                      "Unexpected exceptions caught by a loop's guard (the loop went on)", ["service", "loop"])
SET_ASIDE = Counter("salesbus_set_aside_total",
                    "Items set aside for good (dead-lettered records, failed rows), by where and why",
                    ["service", "where", "reason"])

MAX_REASON = 1000


class Fault(Enum):
    ENVIRONMENT = "environment"   # retry the same work; everything waits (database or broker away)
    ITEM = "item"                 # this item fails for now: park it, retry it later, others go on
    PERMANENT = "permanent"       # this item will never succeed as it is: set it aside with a reason


# SQLSTATE classes (PostgreSQL appendix A). Connection trouble and an overloaded or restarting
# server pass by themselves; the same work succeeds once they do.
_ENVIRONMENT_CLASSES = ("08", "53", "58")                     # connection, insufficient resources, system/IO
_ENVIRONMENT_STATES = {"57P01", "57P02", "57P03", "57P05"}    # admin/crash shutdown, cannot connect now, idle timeout
# Collisions with other transactions, a lock or statement timeout: this item may succeed on a later
# try, but retrying it in place would hold up everything behind it, so it is parked with backoff.
_ITEM_STATES = {"40001", "40P01", "55P03", "57014"}           # serialization, deadlock, lock not available, cancel


def classify(exc: BaseException, conn: psycopg.Connection | None = None) -> Fault:
    """What kind of failure `exc` is. `conn` (when given) tells a broken connection apart."""
    if isinstance(exc, TransientError):
        return Fault.ITEM
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if conn is not None and (conn.closed or conn.broken):
            return Fault.ENVIRONMENT
        if state is None:
            # No SQLSTATE: the client lost the server (connection refused, reset, pool timeout).
            return Fault.ENVIRONMENT if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) \
                else Fault.PERMANENT
        if state[:2] in _ENVIRONMENT_CLASSES or state in _ENVIRONMENT_STATES:
            return Fault.ENVIRONMENT
        if state in _ITEM_STATES or state[:2] == "40":
            return Fault.ITEM
        # data exceptions (22), integrity (23), syntax/access (42), program limits (54), ...
        return Fault.PERMANENT
    try:
        from psycopg_pool import PoolTimeout
        if isinstance(exc, PoolTimeout):
            return Fault.ENVIRONMENT
    except ImportError:  # pragma: no cover
        pass
    return Fault.PERMANENT


def is_environment(exc: BaseException, conn: psycopg.Connection | None = None) -> bool:
    return classify(exc, conn) is Fault.ENVIRONMENT


def storable(value: object, limit: int = MAX_REASON) -> str:
    """`value` as text PostgreSQL always accepts (no NUL, valid UTF-8) and at most `limit` chars."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        try:
            text = str(value)
        except Exception as exc:  # a __str__ that raises is itself a reason
            text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
    text = text.replace("\x00", "\\0")
    # lone surrogates (from json.loads of "\ud800") cannot be encoded: replace them
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def reason_of(exc: BaseException, limit: int = MAX_REASON) -> str:
    """`ExceptionClass: message`, storable."""
    return storable(f"{type(exc).__name__}: {exc}", limit)


@dataclass
class _Stall:
    since: float
    reason: str


class Stalls:
    """Which loops of this process are retrying the same work, since when, and why."""

    def __init__(self, service: str):
        self.service = service
        self._stalls: dict[str, _Stall] = {}
        self._lock = threading.Lock()

    def retrying(self, loop: str, reason: str) -> float:
        """Record one more failed try; returns how long the loop has been stalled."""
        now = time.monotonic()
        with self._lock:
            stall = self._stalls.get(loop)
            if stall is None:
                stall = self._stalls[loop] = _Stall(now, storable(reason, 300))
            stall.reason = storable(reason, 300)
            seconds = now - stall.since
        STALLED_SECONDS.labels(self.service, loop).set(seconds)
        return seconds

    def flowing(self, loop: str) -> None:
        with self._lock:
            was = self._stalls.pop(loop, None)
        if was is not None:
            log.info("%s %s flowing again after %.1fs", self.service, loop, time.monotonic() - was.since)
        STALLED_SECONDS.labels(self.service, loop).set(0)

    def longest(self) -> tuple[str, float, str] | None:
        """(loop, seconds, reason) of the longest current stall, or None."""
        now = time.monotonic()
        with self._lock:
            if not self._stalls:
                return None
            loop, stall = min(self._stalls.items(), key=lambda kv: kv[1].since)
            return loop, now - stall.since, stall.reason

    def refresh(self) -> None:
        """Bring the gauges up to date (called before a scrape and by /readyz)."""
        now = time.monotonic()
        with self._lock:
            items = list(self._stalls.items())
        for loop, stall in items:
            STALLED_SECONDS.labels(self.service, loop).set(now - stall.since)


class Backoff:
    """0.1, 0.2, 0.4 ... seconds, capped; reset when work succeeds."""

    def __init__(self, first_s: float = 0.1, cap_s: float = 5.0):
        self.first_s, self.cap_s = first_s, cap_s
        self.delay = first_s

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap_s)
        return delay

    def reset(self) -> None:
        self.delay = self.first_s


def guarded_loop(service: str, loop: str, step: Callable[[], bool], stopping: threading.Event, *,
                 stalls: Stalls | None = None, idle_s: float = 0.5, backoff_cap_s: float = 5.0,
                 wait: Callable[[float], Any] | None = None) -> None:
    """Run `step()` until `stopping` is set. `step` returns True when it did work (run again at
    once) and False when idle (wait `idle_s`, through `wait` when given: a loop that can be woken,
    as the email sender is by a NOTIFY, passes its own). Nothing `step` raises ends the loop: an environment
    fault is retried with backoff and shown as a stall; anything else is logged with its traceback,
    counted in `salesbus_loop_errors_total` and retried with backoff, so a worker whose step keeps
    failing is visible but never takes the process (and the other loops) down with it."""
    backoff = Backoff(cap_s=backoff_cap_s)
    stalls = stalls or Stalls(service)
    while not stopping.is_set():
        try:
            busy = step()
        except Exception as exc:  # noqa: BLE001 - this is the guard
            fault = classify(exc)
            seconds = stalls.retrying(loop, reason_of(exc, 300))
            delay = backoff.next()
            if fault is not Fault.PERMANENT:   # the database or broker is away, or a timeout
                log.warning("%s %s: %s; retrying in %.1fs (stalled %.0fs)", service, loop, exc, delay, seconds)
            else:
                LOOP_ERRORS.labels(service, loop).inc()
                log.error("%s %s: unexpected error, retrying in %.1fs (stalled %.0fs):\n%s",
                          service, loop, delay, seconds, traceback.format_exc())
            stopping.wait(delay)
            continue
        backoff.reset()
        stalls.flowing(loop)
        if not busy:
            (wait or stopping.wait)(idle_s)
