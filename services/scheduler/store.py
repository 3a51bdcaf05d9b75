"""The scheduler's SQL: standing orders, their emitted occurrences, and timers."""
from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from services.scheduler.standing import StandingOrder

_COLUMNS = """standing_order_id, customer_id, lines, delivery, payment, language, every, unit,
              start_date, time_zone, local_time, end_date, max_occurrences, skip_occurrences, status,
              last_occurrence, next_occurrence, next_due_at, version"""


def _values(o: StandingOrder) -> dict:
    return {
        "standing_order_id": o.standing_order_id, "customer_id": o.customer_id,
        "lines": Jsonb([line.model_dump(mode="json") for line in o.lines]),
        "delivery": Jsonb(o.delivery.model_dump(mode="json")),
        "payment": Jsonb(o.payment.model_dump(mode="json", exclude_none=True)),
        "language": o.language, "every": o.every, "unit": o.unit, "start_date": o.start_date,
        "time_zone": o.time_zone, "local_time": o.local_time, "end_date": o.end_date,
        "max_occurrences": o.max_occurrences, "skip_occurrences": list(o.skip_occurrences),
        "status": o.status, "last_occurrence": o.last_occurrence, "next_occurrence": o.next_occurrence,
        "next_due_at": o.next_due_at, "version": o.version,
    }


def insert_standing_order(conn: psycopg.Connection, order: StandingOrder, now: datetime) -> bool:
    """False when an order with this id already exists (a repeated request)."""
    row = conn.execute(
        f"""INSERT INTO standing_orders ({_COLUMNS}, created_at, updated_at)
            VALUES (%(standing_order_id)s, %(customer_id)s, %(lines)s, %(delivery)s, %(payment)s,
                    %(language)s, %(every)s, %(unit)s, %(start_date)s, %(time_zone)s, %(local_time)s,
                    %(end_date)s, %(max_occurrences)s, %(skip_occurrences)s, %(status)s,
                    %(last_occurrence)s, %(next_occurrence)s, %(next_due_at)s, %(version)s,
                    %(now)s, %(now)s)
            ON CONFLICT (standing_order_id) DO NOTHING RETURNING 1""",
        {**_values(order), "now": now}).fetchone()
    return row is not None


def save(conn: psycopg.Connection, order: StandingOrder, now: datetime) -> None:
    """Write the order's new state; the caller holds its row lock (get(..., lock=True))."""
    conn.execute(
        """UPDATE standing_orders SET lines = %(lines)s, delivery = %(delivery)s, status = %(status)s,
               skip_occurrences = %(skip_occurrences)s, last_occurrence = %(last_occurrence)s,
               next_occurrence = %(next_occurrence)s, next_due_at = %(next_due_at)s,
               version = %(version)s, updated_at = %(now)s
           WHERE standing_order_id = %(standing_order_id)s""",
        {**_values(order), "now": now})


def get(conn: psycopg.Connection, standing_order_id: str, *, lock: bool = False) -> StandingOrder | None:
    # A change waits for the ticker's lock (and vice versa): whichever commits first wins.
    row = conn.execute(f"SELECT {_COLUMNS} FROM standing_orders WHERE standing_order_id = %s"
                       + (" FOR UPDATE" if lock else ""), (standing_order_id,)).fetchone()
    return StandingOrder.from_row(row) if row else None


def for_customer(conn: psycopg.Connection, customer_id: str, limit: int, offset: int
                 ) -> tuple[list[StandingOrder], int]:
    """A page of a customer's standing orders, oldest first, and how many there are."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM standing_orders WHERE customer_id = %s ORDER BY created_at, "
                        "standing_order_id LIMIT %s OFFSET %s", (customer_id, limit, offset)).fetchall()
    total = conn.execute("SELECT count(*) AS n FROM standing_orders WHERE customer_id = %s",
                         (customer_id,)).fetchone()["n"]
    return [StandingOrder.from_row(r) for r in rows], total


def lock_due_rows(conn: psycopg.Connection, now: datetime, served: list[str], limit: int) -> list[dict]:
    """Up to ``limit`` of the most overdue active orders not yet served this tick, locked, as
    stored; rows another ticker (or a customer's change) holds are skipped, never waited for.
    Raw rows: turning one into a StandingOrder may fail, and the ticker must still hold its lock
    to set it aside."""
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM standing_orders
            WHERE status = 'active' AND next_due_at <= %s AND NOT (standing_order_id = ANY(%b))
            ORDER BY next_due_at, standing_order_id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (now, served, limit)).fetchall()


def advance(conn: psycopg.Connection, orders: list[StandingOrder], now: datetime) -> None:
    """Write where the ticker moved each schedule (one statement for all); the caller holds their
    row locks, so only the schedule columns change: terms are as the ticker read them."""
    if not orders:
        return
    conn.execute(
        """UPDATE standing_orders s SET status = v.status, last_occurrence = v.last_occurrence,
               next_occurrence = v.next_occurrence, next_due_at = v.next_due_at, version = v.version,
               updated_at = %s
           FROM unnest(%b::text[], %b::text[], %b::int[], %b::int[], %b::timestamptz[], %b::int[])
                AS v(standing_order_id, status, last_occurrence, next_occurrence, next_due_at, version)
           WHERE s.standing_order_id = v.standing_order_id""",
        (now, [o.standing_order_id for o in orders], [o.status for o in orders],
         [o.last_occurrence for o in orders], [o.next_occurrence for o in orders],
         [o.next_due_at for o in orders], [o.version for o in orders]))


def mark_standing_order_failed(conn: psycopg.Connection, standing_order_id: str, reason: str,
                               now: datetime) -> None:
    """Set the schedule aside: the ticker never selects it again (status 'failed'); the caller
    holds its row lock. Its terms and progress stay as they were, for repair."""
    conn.execute("""UPDATE standing_orders SET status = 'failed', failed_reason = %s, failed_at = %s, updated_at = %s
                    WHERE standing_order_id = %s""", (reason, now, now, standing_order_id))


def record_occurrences(conn: psycopg.Connection, rows: list[tuple[str, int, datetime, str]],
                       emitted_at: datetime) -> None:
    """(standing_order_id, occurrence, due_at, event_id) rows, in one statement.
    No ON CONFLICT: emitting an occurrence twice is a bug that must fail, not pass silently."""
    if not rows:
        return
    ids, occurrences, due, event_ids = (list(c) for c in zip(*rows))
    conn.execute("""INSERT INTO occurrences (standing_order_id, occurrence, due_at, emitted_at, event_id)
                    SELECT v.standing_order_id, v.occurrence, v.due_at, %s, v.event_id
                    FROM unnest(%b::text[], %b::int[], %b::timestamptz[], %b::text[])
                         AS v(standing_order_id, occurrence, due_at, event_id)""",
                 (emitted_at, ids, occurrences, due, event_ids))


def emitted_occurrences(conn: psycopg.Connection, standing_order_id: str, limit: int = 24) -> list[dict]:
    rows = conn.execute("""SELECT occurrence, due_at, emitted_at FROM occurrences WHERE standing_order_id = %s
                           ORDER BY occurrence DESC LIMIT %s""", (standing_order_id, limit)).fetchall()
    return rows[::-1]


# --- timers ----------------------------------------------------------------------------------

def request_timer(conn: psycopg.Connection, *, timer_id: str, owner: str, kind: str, fire_at: datetime,
                  payload: dict, changed_at: datetime) -> None:
    """Upsert: a newer request replaces the time; re-requesting the time it already fired at does not re-arm it."""
    conn.execute(
        """INSERT INTO timers (timer_id, owner, kind, fire_at, payload, status, changed_at)
           VALUES (%s, %s, %s, %s, %s, 'pending', %s)
           ON CONFLICT (timer_id) DO UPDATE SET
               owner = EXCLUDED.owner, kind = EXCLUDED.kind, payload = EXCLUDED.payload,
               fire_at = EXCLUDED.fire_at, changed_at = EXCLUDED.changed_at,
               status = CASE WHEN timers.status = 'fired' AND timers.fire_at = EXCLUDED.fire_at
                             THEN 'fired' ELSE 'pending' END
           WHERE timers.changed_at < EXCLUDED.changed_at
              OR (timers.changed_at = EXCLUDED.changed_at AND timers.status <> 'cancelled')""",
        (timer_id, owner, kind, fire_at, Jsonb(payload), changed_at))


def cancel_timer(conn: psycopg.Connection, *, timer_id: str, owner: str, changed_at: datetime) -> None:
    """A cancel for a timer not seen yet is kept, so its request (arriving later, older) stays cancelled."""
    conn.execute(
        """INSERT INTO timers (timer_id, owner, status, changed_at) VALUES (%s, %s, 'cancelled', %s)
           ON CONFLICT (timer_id) DO UPDATE SET status = 'cancelled', changed_at = EXCLUDED.changed_at
           WHERE timers.changed_at <= EXCLUDED.changed_at AND timers.status <> 'fired'""",
        (timer_id, owner, changed_at))


def timer_owner(conn: psycopg.Connection, timer_id: str) -> str | None:
    row = conn.execute("SELECT owner FROM timers WHERE timer_id = %s", (timer_id,)).fetchone()
    return row["owner"] if row else None


def lock_due_timers(conn: psycopg.Connection, now: datetime, limit: int) -> list[dict]:
    return conn.execute(
        """SELECT timer_id, owner, kind, fire_at, payload FROM timers
           WHERE status = 'pending' AND fire_at <= %s
           ORDER BY fire_at, timer_id LIMIT %s FOR UPDATE SKIP LOCKED""", (now, limit)).fetchall()


def mark_timer_failed(conn: psycopg.Connection, timer_id: str, reason: str, now: datetime) -> None:
    """Set the timer aside (status 'failed'): it is never fired; the caller holds its row lock."""
    conn.execute("UPDATE timers SET status = 'failed', failed_reason = %s, failed_at = %s WHERE timer_id = %s",
                 (reason, now, timer_id))


def mark_fired(conn: psycopg.Connection, timer_ids: list[str], fired_at: datetime) -> None:
    conn.execute("UPDATE timers SET status = 'fired', fired_at = %s WHERE timer_id = ANY(%s)",
                 (fired_at, timer_ids))
