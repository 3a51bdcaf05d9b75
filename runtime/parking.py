"""One parking mechanism for every service: an event that needs another, not yet consumed, waits.

Topics are not ordered relative to each other, so a consumer can see an order's shipment before
its OrderPlaced. The handler parks the event under what it waits on (`subject`, an order id) and
a `slot` that makes a repeat harmless, saying what it waits for; when what it needs arrives, the
handler that took it releases the subject's parked events (`waiting`, oldest first) and `unpark`s
each one it used. Everything runs in the handler's transaction, so a parked event is handled
once like any other.

The wait is bounded: after Settings.parked_event_expiry_s of database time (the demo's business
clock jumps by months) `expiry_worker` moves the row to `parked_expired` with its reason
("waited 7 days for the order's OrderPlaced"), counted in
salesbus_set_aside_total{where="parked",reason="expired"} and listed by `salesbus set-aside`
("expired parked events"). Moved, not flagged: a late event releases nothing that expired.

Applied or expired, never both: `waiting` locks the rows it returns (FOR UPDATE) and the expiry
skips locked rows; a row the expiry deleted first is gone when the handler's lock is granted.

Parking is for an event that is fine but early. An event failing for now (a gateway timeout, a
lock) raises TransientError instead and waits in the runtime's retry_records (runtime/retries.py),
with its key's later events behind it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import psycopg
from psycopg.types.json import Jsonb

from runtime.expiry import expiry_worker
from schemas import REGISTRY, Event

#: the name of the expiry's loop and of the set_aside metric's `where`
WHERE = "parked"


@dataclass(frozen=True)
class Parked:
    slot: str
    event: Event
    waiting_for: str


def park(conn: psycopg.Connection, *, subject: str, slot: str, event: Event, waiting_for: str,
         now: datetime) -> None:
    """Park `event` under `subject` (a repeat in the same slot parks nothing new: the first
    payload stays); parked again, only what it waits for is updated."""
    conn.execute(
        """INSERT INTO parked (subject, slot, event_type, payload, waiting_for, parked_at)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (subject, slot) DO UPDATE SET waiting_for = EXCLUDED.waiting_for""",
        (subject, slot, event.event_type(), Jsonb(event.model_dump(mode="json")), waiting_for, now))


def waiting(conn: psycopg.Connection, subject: str) -> list[Parked]:
    """The events parked under `subject`, oldest first, locked until the transaction ends."""
    rows = conn.execute("""SELECT slot, event_type, payload, waiting_for FROM parked WHERE subject = %s
                           ORDER BY seq FOR UPDATE""", (subject,)).fetchall()
    return [Parked(r["slot"], REGISTRY[r["event_type"]].model_validate(r["payload"]), r["waiting_for"])
            for r in rows]


def unpark(conn: psycopg.Connection, subject: str, slot: str) -> None:
    conn.execute("DELETE FROM parked WHERE subject = %s AND slot = %s", (subject, slot))


def is_parked(conn: psycopg.Connection, subject: str, slot: str) -> bool:
    return conn.execute("SELECT 1 FROM parked WHERE subject = %s AND slot = %s", (subject, slot)).fetchone() is not None


def expire(conn: psycopg.Connection, *, older_than_s: float, limit: int) -> list[dict[str, Any]]:
    """Move up to `limit` events parked longer than `older_than_s` (database time) to
    parked_expired; returns the moved rows. Rows a handler holds are skipped, never waited for."""
    return conn.execute(
        """WITH due AS (
               SELECT seq FROM parked WHERE waiting_since < now() - make_interval(secs => %(older)s)
               ORDER BY waiting_since LIMIT %(limit)s FOR UPDATE SKIP LOCKED),
           moved AS (DELETE FROM parked p USING due d WHERE p.seq = d.seq RETURNING p.*)
           INSERT INTO parked_expired (seq, subject, slot, event_type, payload, waiting_for, parked_at,
                                       waiting_since, reason, expired_at)
           SELECT seq, subject, slot, event_type, payload, waiting_for, parked_at, waiting_since,
                  format('waited %%s for %%s; it did not come', date_trunc('second', now() - waiting_since),
                         waiting_for),
                  now()
           FROM moved
           ON CONFLICT DO NOTHING
           RETURNING subject, slot, event_type, reason""",
        {"older": older_than_s, "limit": limit}).fetchall()


def expiry(service: str) -> Callable:
    """The service's `parked_expiry` worker (a service that parks lists it in its workers)."""
    return expiry_worker(service, WHERE, expire, lambda r: f"parked {r['event_type']} {r['slot']} of {r['subject']}")

