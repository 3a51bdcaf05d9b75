"""The web service's SQL: people, sign-in requests and links, sessions (its own database only)."""
from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

PERSON_COLUMNS = "email, name, role, subject, language, time_zone, active"


def upsert_person(conn: psycopg.Connection, *, email: str, name: str, role: str, subject: str, language: str,
                  time_zone: str, active: bool, now: datetime) -> dict:
    return conn.execute(
        f"""INSERT INTO people (email, name, role, subject, language, time_zone, active, created_at, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role,
                subject = EXCLUDED.subject, language = EXCLUDED.language, time_zone = EXCLUDED.time_zone,
                active = EXCLUDED.active, updated_at = EXCLUDED.updated_at
            RETURNING {PERSON_COLUMNS}""",
        (email, name, role, subject, language, time_zone, active, now, now)).fetchone()


def person(conn: psycopg.Connection, email: str) -> dict | None:
    return conn.execute(f"SELECT {PERSON_COLUMNS} FROM people WHERE email = %s", (email,)).fetchone()


def people(conn: psycopg.Connection, role: str | None = None, limit: int = 500) -> list[dict]:
    return conn.execute(f"SELECT {PERSON_COLUMNS} FROM people WHERE %(role)s::text IS NULL OR role = %(role)s "
                        "ORDER BY role, email LIMIT %(limit)s", {"role": role, "limit": limit}).fetchall()


def record_signin_request(conn: psycopg.Connection, email: str, client: str, now: datetime) -> None:
    conn.execute("INSERT INTO signin_requests (email, client, at) VALUES (%s, %s, %s)", (email, client, now))


def recent_signin_requests(conn: psycopg.Connection, email: str, client: str, since: datetime) -> tuple[int, int]:
    row = conn.execute("""SELECT (SELECT count(*) FROM signin_requests WHERE email = %(e)s AND at >= %(s)s) AS e,
                                 (SELECT count(*) FROM signin_requests WHERE client = %(c)s AND at >= %(s)s) AS c""",
                       {"e": email, "c": client, "s": since}).fetchone()
    return row["e"], row["c"]


def add_token(conn: psycopg.Connection, token_hash: str, email: str, now: datetime, expires_at: datetime) -> None:
    conn.execute("INSERT INTO signin_tokens (token_hash, email, created_at, expires_at) VALUES (%s, %s, %s, %s)",
                 (token_hash, email, now, expires_at))


def token_email(conn: psycopg.Connection, token_hash: str, now: datetime) -> str | None:
    """The address of a link that still works (unused, not expired), without using it."""
    row = conn.execute("SELECT email FROM signin_tokens WHERE token_hash = %s AND used_at IS NULL "
                       "AND expires_at > %s", (token_hash, now)).fetchone()
    return row["email"] if row else None


def use_token(conn: psycopg.Connection, token_hash: str, now: datetime) -> str | None:
    """Marks the link used, once: the second use (or a concurrent one) finds nothing."""
    row = conn.execute("UPDATE signin_tokens SET used_at = %s WHERE token_hash = %s AND used_at IS NULL "
                       "AND expires_at > %s RETURNING email", (now, token_hash, now)).fetchone()
    return row["email"] if row else None


def add_session(conn: psycopg.Connection, session_hash: str, *, email: str | None, csrf_token: str,
                api_key: str | None, language: str | None, now: datetime, expires_at: datetime) -> None:
    conn.execute("""INSERT INTO sessions (session_hash, email, csrf_token, api_key, language, created_at, expires_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                 (session_hash, email, csrf_token, api_key, language, now, expires_at))


def session(conn: psycopg.Connection, session_hash: str, now: datetime) -> dict | None:
    return conn.execute(
        """SELECT s.session_hash, s.email, s.csrf_token, s.api_key, s.language AS chosen_language, s.expires_at,
                  p.name, p.role, p.subject, p.language, p.time_zone, p.active
           FROM sessions s LEFT JOIN people p ON p.email = s.email
           WHERE s.session_hash = %s AND s.expires_at > %s""", (session_hash, now)).fetchone()


def set_session_language(conn: psycopg.Connection, session_hash: str, language: str) -> None:
    conn.execute("UPDATE sessions SET language = %s WHERE session_hash = %s", (language, session_hash))


def delete_session(conn: psycopg.Connection, session_hash: str) -> str | None:
    """Deletes the session; returns its API key (to revoke) if it had one."""
    row = conn.execute("DELETE FROM sessions WHERE session_hash = %s RETURNING api_key", (session_hash,)).fetchone()
    return row["api_key"] if row else None


def delete_sessions_of(conn: psycopg.Connection, email: str) -> list[str]:
    """Ends every session of a person (their role, subject or access changed); returns the keys."""
    rows = conn.execute("DELETE FROM sessions WHERE email = %s RETURNING api_key", (email,)).fetchall()
    return [r["api_key"] for r in rows if r["api_key"]]


def delete_expired(conn: psycopg.Connection, now: datetime, keep_requests: timedelta, limit: int) -> list[str]:
    """Removes expired sessions (returning their API keys to revoke), old links and old requests."""
    keys = conn.execute("""DELETE FROM sessions WHERE session_hash IN (
                               SELECT session_hash FROM sessions WHERE expires_at <= %s LIMIT %s)
                           RETURNING api_key""", (now, limit)).fetchall()
    conn.execute("DELETE FROM signin_tokens WHERE expires_at <= %s", (now - keep_requests,))
    conn.execute("DELETE FROM signin_requests WHERE at <= %s", (now - keep_requests,))
    return [k["api_key"] for k in keys if k["api_key"]]
