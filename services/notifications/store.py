"""The notifications service's SQL: order contacts, parked events and the email queue."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

# Namespace for this service's per-order advisory locks (two-key form: never collides with
# the runtime's single-key migration and relay locks).
ORDER_LOCK_SPACE = 7301


def lock_order(conn: psycopg.Connection, order_id: str) -> None:
    """Serialise the handlers of one order until the batch commits.

    Without it, an OrderShipped handled by one replica and its OrderPlaced by another could
    each miss the other's uncommitted row, and the shipped event would stay parked forever.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ORDER_LOCK_SPACE, order_id))


def remember_order(conn: psycopg.Connection, *, order_id: str, customer_id: str, email: str, recipient: str,
                   language: str, country: str, now: datetime, confirmation_number: str | None = None) -> None:
    conn.execute(
        """INSERT INTO order_contacts (order_id, customer_id, email, recipient, language, country,
                                       confirmation_number, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (order_id) DO UPDATE SET
               customer_id = EXCLUDED.customer_id, email = EXCLUDED.email, recipient = EXCLUDED.recipient,
               language = EXCLUDED.language, country = EXCLUDED.country,
               confirmation_number = COALESCE(EXCLUDED.confirmation_number, order_contacts.confirmation_number),
               updated_at = EXCLUDED.updated_at""",
        (order_id, customer_id, email, recipient, language, country, confirmation_number, now))


def order_contact(conn: psycopg.Connection, order_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM order_contacts WHERE order_id = %s", (order_id,)).fetchone()


def park(conn: psycopg.Connection, *, order_id: str, kind: str, event_type: str, payload: dict,
         now: datetime) -> None:
    conn.execute(
        """INSERT INTO parked_events (order_id, kind, event_type, payload, parked_at)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (order_id, kind) DO NOTHING""",
        (order_id, kind, event_type, Jsonb(payload), now))


def parked(conn: psycopg.Connection, order_id: str) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM parked_events WHERE order_id = %s ORDER BY parked_at",
                        (order_id,)).fetchall()


def unpark(conn: psycopg.Connection, order_id: str, kind: str) -> None:
    conn.execute("DELETE FROM parked_events WHERE order_id = %s AND kind = %s", (order_id, kind))


def queue(conn: psycopg.Connection, *, notification_id: str, kind: str, customer_id: str, recipient: str,
          language: str, subject: str, body_text: str, body_html: str, now: datetime,
          order_id: str | None = None, reminder_id: str | None = None,
          standing_order_id: str | None = None, occurrence: int | None = None) -> bool:
    """Queue one email; False when it was already queued (redelivery, or a duplicate event)."""
    row = conn.execute(
        """INSERT INTO notifications (notification_id, kind, order_id, reminder_id, standing_order_id, occurrence,
                                      customer_id, recipient, language, subject, body_text, body_html, queued_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING notification_id""",
        (notification_id, kind, order_id, reminder_id, standing_order_id, occurrence, customer_id, recipient,
         language, subject, body_text, body_html, now)).fetchone()
    return row is not None


def next_due(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The oldest pending email whose retry time has come, locked; replicas skip each other's."""
    return conn.execute(
        """SELECT * FROM notifications
           WHERE status = 'pending' AND next_attempt_at <= now()
           ORDER BY next_attempt_at, queued_at LIMIT 1
           FOR UPDATE SKIP LOCKED""").fetchone()


def mark_sent(conn: psycopg.Connection, notification_id: str, *, attempts: int, sent_at: datetime) -> None:
    conn.execute(
        """UPDATE notifications SET status = 'sent', attempts = %s, sent_at = %s
           WHERE notification_id = %s""", (attempts, sent_at, notification_id))


def record_failure(conn: psycopg.Connection, notification_id: str, *, attempts: int, error: str,
                   retry_in_s: float) -> None:
    conn.execute(
        """UPDATE notifications
           SET attempts = %s, last_error = %s, next_attempt_at = now() + make_interval(secs => %s)
           WHERE notification_id = %s""", (attempts, error, retry_in_s, notification_id))
