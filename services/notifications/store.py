"""The notifications service's SQL: order contacts and the email queue (parked events: runtime.parking)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

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
                   language: str, country: str, now: datetime, confirmation_number: str | None = None) -> dict[str, Any]:
    """Take the order's lock (lock_order) and write its contact row, in one statement (they were
    two per OrderPlaced and per OrderConfirmed); returns the row as it now stands.

    The lock is taken before the row is written (the FROM clause runs first), as lock_order
    would. What it guards is read by the caller's next statements (what is parked for the
    order), whose snapshots come after the lock: a park committed by another replica meanwhile is
    seen. (order_contact's readers still lock first, in a statement of its own: the read that
    decides whether to park must not use a snapshot from before the lock.)"""
    return conn.execute(
        """INSERT INTO order_contacts (order_id, customer_id, email, recipient, language, country,
                                       confirmation_number, updated_at)
           SELECT %(order)s, %(customer)s, %(email)s, %(recipient)s, %(language)s, %(country)s, %(number)s, %(now)s
           FROM (SELECT pg_advisory_xact_lock(%(space)s, hashtext(%(order)s))) AS locked
           ON CONFLICT (order_id) DO UPDATE SET
               customer_id = EXCLUDED.customer_id, email = EXCLUDED.email, recipient = EXCLUDED.recipient,
               language = EXCLUDED.language, country = EXCLUDED.country,
               confirmation_number = COALESCE(EXCLUDED.confirmation_number, order_contacts.confirmation_number),
               updated_at = EXCLUDED.updated_at
           RETURNING *""",
        {"order": order_id, "customer": customer_id, "email": email, "recipient": recipient, "language": language,
         "country": country, "number": confirmation_number, "now": now, "space": ORDER_LOCK_SPACE}).fetchone()


def order_contact(conn: psycopg.Connection, order_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM order_contacts WHERE order_id = %s", (order_id,)).fetchone()


#: the channel a queued email is announced on (sender.SenderWorker listens)
WAKE_CHANNEL = "email_queue"


def queue(conn: psycopg.Connection, *, notification_id: str, kind: str, customer_id: str, recipient: str,
          language: str, subject: str, body_text: str, body_html: str, now: datetime,
          order_id: str | None = None, reminder_id: str | None = None,
          standing_order_id: str | None = None, occurrence: int | None = None, document: str | None = None,
          attachment: tuple[str, bytes] | None = None) -> bool:
    """Queue one email; False when it was already queued (redelivery, or a duplicate event).
    `attachment`: (file name, PDF bytes)."""
    name, data = attachment or (None, None)
    row = conn.execute(
        """INSERT INTO notifications (notification_id, kind, order_id, reminder_id, standing_order_id, occurrence,
                                      customer_id, recipient, language, subject, body_text, body_html, queued_at,
                                      document, attachment_name, attachment)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING notification_id, pg_notify(%s, '')""",
        (notification_id, kind, order_id, reminder_id, standing_order_id, occurrence, customer_id, recipient,
         language, subject, body_text, body_html, now, document, name, data, WAKE_CHANNEL)).fetchone()
    # pg_notify runs only for a row it inserted: it wakes an idle sender at commit (PostgreSQL
    # sends one per transaction however many emails it queued), in the INSERT itself rather than
    # a NOTIFY statement after it; the sender's safety net finds the email anyway if it is missed
    return row is not None


#: In the order of the index notifications_due_in_order (migration 0005): on an index of
#: next_attempt_at alone every claim sorted the whole backlog.
DUE_SQL = """SELECT *, extract(epoch FROM now() - first_failed_at)::float8 AS failing_for_s FROM notifications
             WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at, queued_at LIMIT %s
             FOR UPDATE SKIP LOCKED"""


def due(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` of the oldest pending emails whose retry time has come, locked until the
    transaction ends; replicas skip each other's. `failing_for_s`: seconds since its first
    failed attempt (None if it never failed). One statement for the sender's whole batch."""
    return conn.execute(DUE_SQL, (limit,)).fetchall()


def has_pending(conn: psycopg.Connection) -> bool:
    """Any email still to go out, due now or waiting for its retry."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM notifications WHERE status = 'pending')").fetchone()["exists"]


def pending_backlog(conn: psycopg.Connection) -> tuple[int, float]:
    """(emails pending, seconds the oldest has waited); queued_at is business time, which the demo
    moves ahead: an age below zero reads as 0."""
    row = conn.execute("""SELECT count(*) AS n, greatest(0, COALESCE(extract(epoch FROM now() - min(queued_at)), 0))
                          AS age FROM notifications WHERE status = 'pending'""").fetchone()
    return row["n"], float(row["age"])


def mark_sent(conn: psycopg.Connection, notification_id: str, *, attempts: int, sent_at: datetime) -> None:
    conn.execute(
        """UPDATE notifications SET status = 'sent', attempts = %s, sent_at = %s
           WHERE notification_id = %s""", (attempts, sent_at, notification_id))


def mark_sent_many(conn: psycopg.Connection, sent: list[tuple[str, int]], *, sent_at: datetime) -> None:
    """mark_sent for (notification id, attempts) pairs, in one statement."""
    conn.execute(
        """UPDATE notifications AS n SET status = 'sent', attempts = v.attempts, sent_at = %s
           FROM unnest(%b::text[], %b::int[]) AS v(notification_id, attempts)
           WHERE n.notification_id = v.notification_id""",
        (sent_at, [nid for nid, _ in sent], [attempts for _, attempts in sent]))


def record_failure(conn: psycopg.Connection, notification_id: str, *, attempts: int, error: str,
                   retry_in_s: float) -> None:
    """A failure for now: try again in `retry_in_s`; the first one starts the retry window."""
    conn.execute(
        """UPDATE notifications
           SET attempts = %s, last_error = %s, next_attempt_at = now() + make_interval(secs => %s),
               first_failed_at = COALESCE(first_failed_at, now())
           WHERE notification_id = %s""", (attempts, error, retry_in_s, notification_id))


def mark_failed(conn: psycopg.Connection, notification_id: str, *, attempts: int, reason: str,
                failed_at: datetime) -> None:
    """Set the email aside for good: it is never taken again (listed by `salesbus set-aside`)."""
    conn.execute(
        """UPDATE notifications
           SET status = 'failed', attempts = %s, last_error = %s, failed_at = %s,
               first_failed_at = COALESCE(first_failed_at, now())
           WHERE notification_id = %s""", (attempts, reason, failed_at, notification_id))
