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


def update_customer(conn, *, customer_id: str, name: str, segment: str, language: str, time_zone: str,
                    salesperson_id: str, now: datetime) -> bool:
    row = conn.execute(
        """UPDATE customers SET name = %s, segment = %s, language = %s, time_zone = %s, salesperson_id = %s,
                                updated_at = %s
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
                            payment_terms_days: int, changed_at: datetime) -> None:
    # Only a newer change replaces what we hold: topics do not arrive in order.
    conn.execute(
        """INSERT INTO supplier_accounts (customer_id, status, credit_limit, open_balance, currency,
                                          payment_terms_days, changed_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (customer_id) DO UPDATE
             SET status = EXCLUDED.status, credit_limit = EXCLUDED.credit_limit,
                 open_balance = EXCLUDED.open_balance, currency = EXCLUDED.currency,
                 payment_terms_days = EXCLUDED.payment_terms_days, changed_at = EXCLUDED.changed_at
             WHERE supplier_accounts.changed_at <= EXCLUDED.changed_at""",
        (customer_id, status, credit_limit, open_balance, currency, payment_terms_days, changed_at))


def supplier_account(conn, customer_id: str) -> dict | None:
    return conn.execute("""SELECT status, credit_limit, open_balance, currency, payment_terms_days, changed_at
                           FROM supplier_accounts WHERE customer_id = %s""", (customer_id,)).fetchone()


# Channels that are a conversation with the customer; a web visit is the customer alone.
CONVERSATION_CHANNELS = ("site_visit", "phone_call", "email_in", "email_out", "meeting")


def last_contact_at(conn, customer_id: str) -> datetime | None:
    row = conn.execute(
        """SELECT max(occurred_at) AS at FROM timeline
           WHERE customer_id = %s AND kind = 'contact' AND subtype = ANY(%s)""",
        (customer_id, list(CONVERSATION_CHANNELS))).fetchone()
    return row["at"]


def customers_by_last_contact(conn, *, no_contact_since: datetime | None, salesperson_id: str | None,
                              limit: int) -> list[dict]:
    """Customers not spoken to since `no_contact_since` (never-contacted ones first), or all of them."""
    return conn.execute(
        """SELECT c.customer_id, c.name, c.segment, c.salesperson_id, last.at AS last_contact_at
           FROM customers c
           LEFT JOIN LATERAL (SELECT max(occurred_at) AS at FROM timeline t
                              WHERE t.customer_id = c.customer_id AND t.kind = 'contact'
                                AND t.subtype = ANY(%s)) last ON true
           WHERE (%s::timestamptz IS NULL OR last.at IS NULL OR last.at < %s)
             AND (%s::text IS NULL OR c.salesperson_id = %s)
           ORDER BY last.at NULLS FIRST, c.customer_id LIMIT %s""",
        (list(CONVERSATION_CHANNELS), no_contact_since, no_contact_since, salesperson_id, salesperson_id,
         limit)).fetchall()


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
                 currency: str) -> None:
    conn.execute(
        """INSERT INTO orders (order_id, customer_id, placed_at, channel, total, currency)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING""",
        (order_id, customer_id, placed_at, channel, total, currency))


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


def park_shipment(conn, order_id: str, tracking_number: str, payload: dict, now: datetime) -> None:
    conn.execute(
        """INSERT INTO parked_shipments (order_id, tracking_number, payload, parked_at) VALUES (%s, %s, %s, %s)
           ON CONFLICT DO NOTHING""", (order_id, tracking_number, Jsonb(payload), now))


def take_parked_shipments(conn, order_id: str) -> list[dict]:
    rows = conn.execute("DELETE FROM parked_shipments WHERE order_id = %s RETURNING payload", (order_id,))
    return [r["payload"] for r in rows.fetchall()]
