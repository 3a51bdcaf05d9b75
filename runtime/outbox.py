"""Writing to the service's outbox (inside the caller's transaction)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg

from runtime.containment import storable
from schemas.envelope import CloudEvent, to_record


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


#: the rows still to publish, and how long the oldest has waited: the relay's gauges and `salesbus
#: status`. Its predicate is the partial index outbox_pending's, so it reads only those rows; the
#: relay's gauge used `published_at IS NULL` alone, which no index answers: every second it read
#: each published row kept for the retention (62,608 rows 131 times in a 20,000-order bench run),
#: and it counted a set-aside row as waiting, so the oldest age (SalesbusOutboxOld) grew for good.
PENDING_SQL = ("SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM outbox "
               "WHERE published_at IS NULL AND failed_at IS NULL")


def event_row(ce: CloudEvent, traceparent: str | None = None) -> OutboxRow:
    key, value, headers = to_record(ce, traceparent)
    return OutboxRow(ce.id, ce.type, key, value, headers)


def write_outbox(conn: psycopg.Connection, rows: list[OutboxRow]) -> None:
    if not rows:
        return
    # One statement for the whole batch: per-row INSERTs were the bottleneck. Keys and headers are
    # made storable: an event keyed by an upstream id with a NUL must not fail the whole batch.
    # The relay's wake-up (delivered at commit) is in the same statement: a NOTIFY statement after
    # it was one more per consumed batch.
    conn.execute(
        """WITH written AS (
             INSERT INTO outbox (event_id, topic, key, value, headers)
             SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::jsonb[])
             ON CONFLICT (event_id, topic) DO NOTHING)
           SELECT pg_notify('outbox', '')""",
        ([r.event_id for r in rows], [r.topic for r in rows], [storable(r.key, 1000) for r in rows],
         [r.value for r in rows], [json.dumps({storable(k, 200): storable(v, 4096) for k, v in r.headers.items()})
                                   for r in rows]),
    )
