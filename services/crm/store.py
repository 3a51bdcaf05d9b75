"""The CRM's SQL: plain, parameterised functions taking a connection (rows are dicts)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

# --- salespeople and customer profiles ------------------------------------------------------


def upsert_salesperson(conn, *, salesperson_id: str, email: str, time_zone: str, language: str,
                       now: datetime) -> None:
    conn.execute(
        """INSERT INTO salespeople (salesperson_id, email, time_zone, language, updated_at)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (salesperson_id) DO UPDATE
             SET email = EXCLUDED.email, time_zone = EXCLUDED.time_zone, language = EXCLUDED.language,
                 updated_at = EXCLUDED.updated_at""",
        (salesperson_id, email, time_zone, language, now))


def salesperson(conn, salesperson_id: str) -> dict | None:
    return conn.execute("SELECT * FROM salespeople WHERE salesperson_id = %s", (salesperson_id,)).fetchone()


def insert_customer(conn, *, customer_id: str, name: str, segment: str, language: str, time_zone: str,
                    salesperson_id: str, now: datetime) -> bool:
    row = conn.execute(
        """INSERT INTO customers (customer_id, name, segment, language, time_zone, salesperson_id,
                                  created_at, updated_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id""",
        (customer_id, name, segment, language, time_zone, salesperson_id, now, now)).fetchone()
    return row is not None


def ensure_salesperson(conn, *, salesperson_id: str, email: str, time_zone: str, language: str,
                       now: datetime) -> None:
    """The salesperson as configured, unless the CRM knows them already (an operator's edits stay)."""
    conn.execute(
        """INSERT INTO salespeople (salesperson_id, email, time_zone, language, updated_at)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (salesperson_id) DO NOTHING""",
        (salesperson_id, email, time_zone, language, now))


def insert_learned_customer(conn, *, customer_id: str, name: str, language: str, time_zone: str,
                            salesperson_id: str, order_id: str, delivery: dict, now: datetime) -> bool:
    """A profile from a first order's delivery details, to be completed by a salesperson; False
    when the customer has a profile already (a redelivery, or two first orders at once)."""
    row = conn.execute(
        """INSERT INTO customers (customer_id, name, segment, language, time_zone, salesperson_id,
                                  created_at, updated_at, source, needs_review, first_order_id, delivery)
           VALUES (%s, %s, 'unclassified', %s, %s, %s, %s, %s, 'first_order', true, %s, %s)
           ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id""",
        (customer_id, name, language, time_zone, salesperson_id, now, now, order_id, Jsonb(delivery))).fetchone()
    return row is not None


def update_customer(conn, *, customer_id: str, name: str, segment: str, language: str, time_zone: str,
                    salesperson_id: str, now: datetime) -> bool:
    """Also marks a learned profile as reviewed: a salesperson has completed it."""
    row = conn.execute(
        """UPDATE customers SET name = %s, segment = %s, language = %s, time_zone = %s, salesperson_id = %s,
                                updated_at = %s, needs_review = false
           WHERE customer_id = %s RETURNING customer_id""",
        (name, segment, language, time_zone, salesperson_id, now, customer_id)).fetchone()
    return row is not None


def replace_contacts(conn, customer_id: str, contacts: list[dict]) -> None:
    conn.execute("DELETE FROM key_contacts WHERE customer_id = %s", (customer_id,))
    for position, c in enumerate(contacts):
        conn.execute(
            """INSERT INTO key_contacts (customer_id, position, name, role, email, phone, is_primary)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (customer_id, position, c["name"], c["role"], c["email"], c["phone"], c["primary"]))


def customer(conn, customer_id: str) -> dict | None:
    """The profile joined with its owning salesperson."""
    return conn.execute(
        """SELECT c.*, s.email AS salesperson_email, s.time_zone AS salesperson_time_zone,
                  s.language AS salesperson_language
           FROM customers c JOIN salespeople s USING (salesperson_id) WHERE c.customer_id = %s""",
        (customer_id,)).fetchone()


def lock_customer(conn, customer_id: str) -> None:
    """Serialises work on one customer's automatic tasks across consumer replicas."""
    conn.execute("SELECT 1 FROM customers WHERE customer_id = %s FOR UPDATE", (customer_id,))


def contacts(conn, customer_id: str) -> list[dict]:
    return conn.execute("""SELECT name, role, email, phone, is_primary FROM key_contacts
                           WHERE customer_id = %s ORDER BY position""", (customer_id,)).fetchall()


def upsert_supplier_account(conn, *, customer_id: str, status: str, credit_limit, open_balance, currency: str,
                            payment_terms_days: int, changed_at: datetime, version: int | None,
                            available_credit=None, on_hold: bool | None = None) -> bool:
    """Keeps the newest announcement: by version where both have one (topics do not arrive in
    order, and clocks of payments' replicas differ), else by changed_at; an announcement without a
    version never replaces one with. False when what we hold is newer."""
    row = conn.execute(
        """INSERT INTO supplier_accounts (customer_id, status, credit_limit, open_balance, currency,
                                          payment_terms_days, changed_at, version, available_credit, on_hold)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (customer_id) DO UPDATE
             SET status = EXCLUDED.status, credit_limit = EXCLUDED.credit_limit,
                 open_balance = EXCLUDED.open_balance, currency = EXCLUDED.currency,
                 payment_terms_days = EXCLUDED.payment_terms_days, changed_at = EXCLUDED.changed_at,
                 version = EXCLUDED.version, available_credit = EXCLUDED.available_credit,
                 on_hold = EXCLUDED.on_hold
             WHERE CASE WHEN EXCLUDED.version IS NOT NULL
                        THEN supplier_accounts.version IS NULL OR supplier_accounts.version < EXCLUDED.version
                        ELSE supplier_accounts.version IS NULL AND supplier_accounts.changed_at <= EXCLUDED.changed_at
                   END
           RETURNING customer_id""",
        (customer_id, status, credit_limit, open_balance, currency, payment_terms_days, changed_at,
         version, available_credit, on_hold)).fetchone()
    return row is not None


def supplier_account(conn, customer_id: str) -> dict | None:
    return conn.execute("""SELECT status, credit_limit, open_balance, currency, payment_terms_days, changed_at,
                                  version, available_credit, on_hold
                           FROM supplier_accounts WHERE customer_id = %s""", (customer_id,)).fetchone()


# Channels that are a conversation with the customer; a web visit is the customer alone.
CONVERSATION_CHANNELS = ("site_visit", "phone_call", "email_in", "email_out", "meeting")


def last_contact_at(conn, customer_id: str) -> datetime | None:
    row = conn.execute(
        """SELECT max(occurred_at) AS at FROM timeline
           WHERE customer_id = %s AND kind = 'contact' AND subtype = ANY(%s)""",
        (customer_id, list(CONVERSATION_CHANNELS))).fetchone()
    return row["at"]


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def customers_by_last_contact(conn, *, no_contact_since: datetime | None, salesperson_id: str | None,
                              q: str | None = None, needs_review: bool | None = None, limit: int,
                              offset: int = 0) -> tuple[int, list[dict]]:
    """Customers not spoken to since `no_contact_since` (never-contacted ones first), or all of
    them; `q` finds a customer by id, name or an e-mail of a key contact or of the first order."""
    where = """(%(since)s::timestamptz IS NULL OR last.at IS NULL OR last.at < %(since)s)
               AND (%(sp)s::text IS NULL OR c.salesperson_id = %(sp)s)
               AND (%(review)s::boolean IS NULL OR c.needs_review = %(review)s)
               AND (%(q)s::text IS NULL OR c.customer_id ILIKE %(q)s OR c.name ILIKE %(q)s
                    OR c.delivery->>'email' ILIKE %(q)s
                    OR EXISTS (SELECT 1 FROM key_contacts k WHERE k.customer_id = c.customer_id
                                                              AND k.email ILIKE %(q)s))"""
    params = {"channels": list(CONVERSATION_CHANNELS), "since": no_contact_since, "sp": salesperson_id,
              "review": needs_review, "q": _like(q) if q else None, "limit": limit, "offset": offset}
    source = """FROM customers c
                LEFT JOIN LATERAL (SELECT max(occurred_at) AS at FROM timeline t
                                   WHERE t.customer_id = c.customer_id AND t.kind = 'contact'
                                     AND t.subtype = ANY(%(channels)s)) last ON true"""
    total = conn.execute(f"SELECT count(*) AS n {source} WHERE {where}", params).fetchone()["n"]
    rows = conn.execute(
        f"""SELECT c.customer_id, c.name, c.segment, c.salesperson_id, c.source, c.needs_review,
                   last.at AS last_contact_at
            {source} WHERE {where}
            ORDER BY last.at NULLS FIRST, c.customer_id LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
    return total, rows


# --- the timeline --------------------------------------------------------------------------


def add_entry(conn, *, entry_id: str, customer_id: str, kind: str, subtype: str, occurred_at: datetime,
              summary: str, source: str, now: datetime, contact_name: str | None = None,
              salesperson_id: str | None = None, order_id: str | None = None,
              detail: dict[str, Any] | None = None) -> bool:
    """False when the entry was already there (the same interaction arriving again)."""
    row = conn.execute(
        """INSERT INTO timeline (entry_id, customer_id, kind, subtype, occurred_at, summary, contact_name,
                                 salesperson_id, source, order_id, detail, recorded_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (entry_id) DO NOTHING RETURNING entry_id""",
        (entry_id, customer_id, kind, subtype, occurred_at, summary, contact_name, salesperson_id, source,
         order_id, Jsonb(detail or {}), now)).fetchone()
    return row is not None


def entry(conn, entry_id: str) -> dict | None:
    return conn.execute("SELECT * FROM timeline WHERE entry_id = %s", (entry_id,)).fetchone()


def timeline_page(conn, customer_id: str, *, kind: str | None, newest_first: bool, limit: int,
                  offset: int) -> tuple[int, list[dict]]:
    """`kind` matches a kind (contact, email, order) or a subtype (phone_call, order_shipped, ...)."""
    where = "customer_id = %s AND (%s::text IS NULL OR kind = %s OR subtype = %s)"
    params = (customer_id, kind, kind, kind)
    total = conn.execute(f"SELECT count(*) AS n FROM timeline WHERE {where}", params).fetchone()["n"]
    direction = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        f"""SELECT entry_id, kind, subtype, occurred_at, summary, contact_name, salesperson_id, source,
                   order_id, detail
            FROM timeline WHERE {where}
            ORDER BY occurred_at {direction}, entry_id {direction} LIMIT %s OFFSET %s""",
        (*params, limit, offset)).fetchall()
    return total, rows


# --- orders (for cadence and shipments that name no customer) -------------------------------


def record_order(conn, *, order_id: str, customer_id: str, placed_at: datetime, channel: str, total,
                 currency: str, standing_order_id: str | None = None) -> None:
    conn.execute(
        """INSERT INTO orders (order_id, customer_id, placed_at, channel, total, currency, standing_order_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING""",
        (order_id, customer_id, placed_at, channel, total, currency, standing_order_id))


def catch_up_order(conn, order_id: str) -> None:
    """Milestones that arrived before the OrderPlaced (other topics) are on the timeline already:
    the order row takes them from there."""
    conn.execute(
        """UPDATE orders o SET
             shipped_at = COALESCE(o.shipped_at, (SELECT min(occurred_at) FROM timeline
                                                  WHERE order_id = o.order_id AND subtype = 'order_shipped')),
             confirmation_number = COALESCE(o.confirmation_number,
                                            (SELECT detail->>'confirmation_number' FROM timeline
                                             WHERE entry_id = 'order:' || o.order_id || ':confirmed')),
             cancelled_at = COALESCE(o.cancelled_at, (SELECT occurred_at FROM timeline
                                                      WHERE entry_id = 'order:' || o.order_id || ':cancelled'))
           WHERE o.order_id = %s""", (order_id,))


def mark_shipped(conn, order_id: str, shipped_at: datetime) -> None:
    """The first parcel's time: when the order left."""
    conn.execute("UPDATE orders SET shipped_at = LEAST(COALESCE(shipped_at, %s), %s) WHERE order_id = %s",
                 (shipped_at, shipped_at, order_id))


ORDER_STATUS = """CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' WHEN shipped_at IS NOT NULL THEN 'shipped'
                       WHEN confirmation_number IS NOT NULL THEN 'confirmed' ELSE 'placed' END"""


def orders_page(conn, customer_id: str, *, limit: int, offset: int) -> tuple[int, list[dict]]:
    """The customer's orders as the CRM heard of them, newest first."""
    total = conn.execute("SELECT count(*) AS n FROM orders WHERE customer_id = %s", (customer_id,)).fetchone()["n"]
    rows = conn.execute(
        f"""SELECT order_id, placed_at, channel, total, currency, confirmation_number, shipped_at, cancelled_at,
                   standing_order_id, {ORDER_STATUS} AS status
            FROM orders WHERE customer_id = %s ORDER BY placed_at DESC, order_id DESC LIMIT %s OFFSET %s""",
        (customer_id, limit, offset)).fetchall()
    return total, rows


def upsert_standing_order(conn, *, standing_order_id: str, customer_id: str, status: str, every: int, unit: str,
                          start_date, time_zone: str, end_date, lines: list[dict], changed_at: datetime) -> None:
    # keyed by the standing order on the bus, so its changes arrive in order; <= keeps a replay harmless
    conn.execute(
        """INSERT INTO standing_orders (standing_order_id, customer_id, status, interval_every, interval_unit,
                                        start_date, time_zone, end_date, lines, changed_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (standing_order_id) DO UPDATE
             SET status = EXCLUDED.status, interval_every = EXCLUDED.interval_every,
                 interval_unit = EXCLUDED.interval_unit, start_date = EXCLUDED.start_date,
                 time_zone = EXCLUDED.time_zone, end_date = EXCLUDED.end_date, lines = EXCLUDED.lines,
                 changed_at = EXCLUDED.changed_at
             WHERE standing_orders.changed_at <= EXCLUDED.changed_at""",
        (standing_order_id, customer_id, status, every, unit, start_date, time_zone, end_date, Jsonb(lines),
         changed_at))


def standing_orders_of(conn, customer_id: str, limit: int) -> list[dict]:
    """Live ones first (active, paused), then ended and cancelled; newest first within each."""
    return conn.execute(
        """SELECT * FROM standing_orders WHERE customer_id = %s
           ORDER BY status NOT IN ('active', 'paused'), start_date DESC, standing_order_id LIMIT %s""",
        (customer_id, limit)).fetchall()


def order(conn, order_id: str) -> dict | None:
    return conn.execute("SELECT * FROM orders WHERE order_id = %s", (order_id,)).fetchone()


def set_confirmation(conn, order_id: str, confirmation_number: str) -> None:
    conn.execute("UPDATE orders SET confirmation_number = %s WHERE order_id = %s", (confirmation_number, order_id))


def mark_cancelled(conn, order_id: str, cancelled_at: datetime) -> None:
    conn.execute("UPDATE orders SET cancelled_at = %s WHERE order_id = %s AND cancelled_at IS NULL",
                 (cancelled_at, order_id))


def cadence_orders(conn, customer_id: str) -> list[tuple[str, datetime]]:
    """Orders the customer chose to place: standing-order occurrences come on their own, and a
    cancelled order was not a purchase."""
    rows = conn.execute(
        """SELECT order_id, placed_at FROM orders
           WHERE customer_id = %s AND cancelled_at IS NULL AND channel <> 'standing_order'
           ORDER BY placed_at""", (customer_id,)).fetchall()
    return [(r["order_id"], r["placed_at"]) for r in rows]
