"""The orders service's SQL: plain, parameterised, on the caller's connection (rows are dicts)."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from schemas import OrderPlaced, ProductChanged

# --- orders -----------------------------------------------------------------------------------


#: namespace of this service's per-order advisory locks (two-key form: never collides with the
#: runtime's single-key migration and relay locks)
ORDER_LOCK_SPACE = 7302


def lock_order(conn: psycopg.Connection, order_id: str) -> None:
    """Serialise, until the transaction ends, parking an event for an order not yet known with
    recording that order (insert_order takes the same lock). Without it, a PaymentVerified handled
    by one replica could miss the OrderPlaced another is committing and park, while that
    OrderPlaced missed the parked row: the payment would wait until the parked event expired."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ORDER_LOCK_SPACE, order_id))


def insert_order(conn: psycopg.Connection, ev: OrderPlaced, now: datetime) -> bool:
    """Record a placed order, its lines and its timeline entry in one statement; False when it is
    already known (an upstream republished it: only an "ignored" timeline entry is written).
    One statement, not one per row: psycopg costs 30-100 us of client CPU per statement, and the
    order, a statement per line and the timeline entry were three of the fifteen per order.

    The statement first takes the order's lock (lock_order): the caller's next statement, which
    looks for what is parked for the order, then sees an event another replica parked meanwhile."""
    lines = list(enumerate(ev.lines, start=1))
    row = conn.execute(
        """WITH o AS (
             INSERT INTO orders (order_id, customer_id, status, channel, total_amount, currency, delivery,
                                 payment_mode, language, placed_at, standing_order_id, occurrence, priced_note,
                                 updated_at)
             SELECT %(id)s, %(customer)s, 'placed', %(channel)s, %(amount)s, %(currency)s, %(delivery)s,
                    %(mode)s, %(language)s, %(placed_at)s, %(standing)s, %(occurrence)s, %(note)s, %(now)s
             FROM (SELECT pg_advisory_xact_lock(%(space)s, hashtext(%(id)s))) AS locked   -- lock_order's
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id),
           l AS (
             INSERT INTO order_lines (order_id, line_no, sku, name, quantity, unit_price, currency)
             SELECT o.order_id, l.* FROM o,
                    unnest(%(nos)s::int[], %(skus)s::text[], %(names)s::text[], %(qty)s::int[],
                           %(prices)s::numeric[], %(currencies)s::text[]) AS l),
           t AS (
             INSERT INTO order_timeline (order_id, event_type, outcome, at, details)
             SELECT %(id)s, 'OrderPlaced', CASE WHEN n = 1 THEN 'applied' ELSE 'ignored' END, %(now)s,
                    CASE WHEN n = 1 THEN %(applied)s::jsonb ELSE %(ignored)s::jsonb END
             FROM (SELECT count(*) AS n FROM o) AS inserted)
           SELECT count(*) AS n FROM o""",
        {"id": ev.order_id, "customer": ev.customer_id, "channel": ev.channel, "amount": ev.total.amount,
         "currency": ev.total.currency, "delivery": Jsonb(ev.delivery.model_dump(mode="json")),
         "mode": ev.payment.mode, "language": ev.language, "placed_at": ev.placed_at,
         "standing": ev.standing_order_id, "occurrence": ev.occurrence, "note": ev.priced_note, "now": now,
         "space": ORDER_LOCK_SPACE,
         "nos": [n for n, _ in lines], "skus": [x.sku for _, x in lines], "names": [x.name for _, x in lines],
         "qty": [x.quantity for _, x in lines], "prices": [x.unit_price.amount for _, x in lines],
         "currencies": [x.unit_price.currency for _, x in lines],
         "applied": Jsonb(_jsonable({"channel": ev.channel, "total": str(ev.total), "lines": len(ev.lines),
                                     "placed_at": ev.placed_at})),
         "ignored": Jsonb({"reason": "the order is already recorded (published again upstream)"})}).fetchone()
    return row["n"] == 1


def get_order(conn: psycopg.Connection, order_id: str, *, lock: bool = False) -> dict | None:
    """The order row; `lock` holds it until the transaction ends, so concurrent steps queue up."""
    return conn.execute("SELECT * FROM orders WHERE order_id = %s" + (" FOR UPDATE" if lock else ""),
                        (order_id,)).fetchone()


def order_lines(conn: psycopg.Connection, order_id: str) -> list[dict]:
    return conn.execute("SELECT * FROM order_lines WHERE order_id = %s ORDER BY line_no", (order_id,)).fetchall()


_SUMMARY = """order_id, customer_id, status, confirmation_number, total_amount, currency, channel, placed_at,
              confirmed_at, shipped_at, standing_order_id, occurrence, {centre} AS distribution_centre"""


def get_order_by_confirmation(conn: psycopg.Connection, number: str) -> dict | None:
    return conn.execute("SELECT * FROM orders WHERE confirmation_number = %s", (number,)).fetchone()


def orders_of_customer(conn: psycopg.Connection, customer_id: str, limit: int, offset: int,
                       centre_sql: str) -> tuple[list[dict], int]:
    """A page of a customer's orders, newest first, and how many there are."""
    return find_orders(conn, {"customer_id": customer_id}, limit, offset, centre_sql, newest_first=True)


def find_orders(conn: psycopg.Connection, filters: dict, limit: int, offset: int, centre_sql: str, *,
                newest_first: bool = False) -> tuple[list[dict], int]:
    """A page of orders matching every given filter (status, customer_id, email, placed_from
    inclusive, placed_to exclusive, distribution_centre) and the count over all pages.
    `centre_sql` is the SQL expression of an order's centre (distribution_centre.CENTRE_SQL)."""
    where, args = [], {}
    for name, sql in (("status", "status = %(status)s"), ("customer_id", "customer_id = %(customer_id)s"),
                      ("email", "lower(delivery->>'email') = lower(%(email)s)"),
                      ("placed_from", "placed_at >= %(placed_from)s"), ("placed_to", "placed_at < %(placed_to)s"),
                      ("distribution_centre", f"{centre_sql} = %(distribution_centre)s")):
        if filters.get(name) is not None:
            where.append(sql)
            args[name] = filters[name]
    clause = " AND ".join(where) or "TRUE"
    order = "placed_at DESC, order_id" if newest_first else "placed_at, order_id"
    rows = conn.execute(f"SELECT {_SUMMARY.format(centre=centre_sql)} FROM orders WHERE {clause} "
                        f"ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
                        {**args, "limit": limit, "offset": offset}).fetchall()
    total = conn.execute(f"SELECT count(*) AS n FROM orders WHERE {clause}", args).fetchone()["n"]
    return rows, total


def set_status(conn: psycopg.Connection, order_id: str, status: str, now: datetime) -> None:
    conn.execute("UPDATE orders SET status = %s, updated_at = %s WHERE order_id = %s", (status, now, order_id))


def mark_confirmed(conn: psycopg.Connection, order_id: str, number: str, now: datetime,
                   charge_reference: str | None, *, noted_first: tuple[str, dict] | None = None) -> list[dict] | None:
    """Confirm the order with `number` and note it on its timeline ("OrderConfirmed applied",
    after `noted_first`: (event type, details) of the step that led here, also "applied"), in one
    statement that also reads the order's lines (for its OrderConfirmed), in line order; None
    when `number` is already taken by another order (the caller draws another), and then nothing
    is written.

    A savepoint around the UPDATE caught the unique violation before: two more statements per
    order for a collision of about 1 in 10^12. NOT EXISTS sees every committed number; two orders
    drawing the same one at the same moment would still meet the unique index, which fails the
    batch, and the re-run draws again (runtime/batch.py)."""
    notes = ([noted_first] if noted_first else []) + [("OrderConfirmed", {"confirmation_number": number})]
    rows = conn.execute(
        """WITH u AS (
             UPDATE orders SET status = 'confirmed', confirmation_number = %(number)s, confirmed_at = %(now)s,
                               charge_reference = %(ref)s, updated_at = %(now)s
             WHERE order_id = %(id)s
               AND NOT EXISTS (SELECT 1 FROM orders WHERE confirmation_number = %(number)s)
             RETURNING order_id),
           t AS (
             INSERT INTO order_timeline (order_id, event_type, outcome, at, details)
             SELECT u.order_id, n.event_type, 'applied', %(now)s, n.details
             FROM u, unnest(%(types)s::text[], %(details)s::jsonb[]) WITH ORDINALITY AS n(event_type, details, i)
             ORDER BY n.i)
           SELECT l.* FROM u LEFT JOIN order_lines l ON l.order_id = u.order_id ORDER BY l.line_no""",
        {"number": number, "now": now, "ref": charge_reference, "id": order_id,
         "types": [t for t, _ in notes], "details": [Jsonb(_jsonable(d)) for _, d in notes]}).fetchall()
    if not rows:
        return None   # no row from u: not confirmed
    return [r for r in rows if r["line_no"] is not None]


def mark_shipped(conn: psycopg.Connection, order_id: str, carrier: str, tracking_number: str,
                 distribution_centre: str, shipped_at: datetime, now: datetime) -> None:
    conn.execute(
        """UPDATE orders SET status = 'shipped', carrier = %s, tracking_number = %s, distribution_centre = %s,
                             shipped_at = %s, updated_at = %s WHERE order_id = %s""",
        (carrier, tracking_number, distribution_centre, shipped_at, now, order_id))


def awaiting_shipment(conn: psycopg.Connection, confirmed_before: datetime, limit: int = 50) -> list[dict]:
    """Confirmed orders (id and delivery country) confirmed at or before `confirmed_before`, oldest first."""
    return conn.execute(
        """SELECT order_id, delivery->>'country' AS country FROM orders
           WHERE status = 'confirmed' AND confirmed_at <= %s ORDER BY confirmed_at LIMIT %s""",
        (confirmed_before, limit)).fetchall()


# --- timeline ---------------------------------------------------------------------------------


def add_timeline(conn: psycopg.Connection, order_id: str, event_type: str, outcome: str, at: datetime,
                 details: dict | None = None) -> None:
    conn.execute("""INSERT INTO order_timeline (order_id, event_type, outcome, at, details)
                    VALUES (%s, %s, %s, %s, %s)""",
                 (order_id, event_type, outcome, at, Jsonb(_jsonable(details or {}))))


def timeline(conn: psycopg.Connection, order_id: str) -> list[dict]:
    return conn.execute("""SELECT event_type, outcome, at, details FROM order_timeline
                           WHERE order_id = %s ORDER BY id""", (order_id,)).fetchall()


def _jsonable(details: dict) -> dict:
    return json.loads(json.dumps(details, default=lambda v: format(v, "f") if isinstance(v, Decimal) else str(v)))


# --- catalog copy and standing-order occurrences ----------------------------------------------


def record_product(conn: psycopg.Connection, ev: ProductChanged) -> None:
    conn.execute(
        """INSERT INTO catalog_prices (sku, changed_at, name, unit_price, currency, active)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sku, changed_at) DO NOTHING""",
        (ev.sku, ev.changed_at, ev.name, ev.unit_price.amount, ev.unit_price.currency, ev.active))


def product_as_of(conn: psycopg.Connection, sku: str, at: datetime) -> dict | None:
    """The catalog entry in force at `at`. If every entry we hold is later (services' clocks
    differ a little), the earliest one: it is the closest to that date we know."""
    return conn.execute(
        """SELECT * FROM catalog_prices WHERE sku = %s
           ORDER BY (changed_at <= %s) DESC,
                    CASE WHEN changed_at <= %s THEN changed_at END DESC,
                    changed_at ASC
           LIMIT 1""", (sku, at, at)).fetchone()


def record_occurrence(conn: psycopg.Connection, standing_order_id: str, occurrence: int, order_id: str,
                      outcome: str, reason: str | None, due_at: datetime, now: datetime) -> bool:
    """False when this occurrence was already handled (the scheduler delivered it again)."""
    row = conn.execute(
        """INSERT INTO standing_occurrences (standing_order_id, occurrence, order_id, outcome, reason, due_at,
                                             handled_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING occurrence""",
        (standing_order_id, occurrence, order_id, outcome, reason, due_at, now)).fetchone()
    return row is not None


def occurrence_handled(conn: psycopg.Connection, standing_order_id: str, occurrence: int) -> bool:
    return conn.execute("SELECT 1 FROM standing_occurrences WHERE standing_order_id = %s AND occurrence = %s",
                        (standing_order_id, occurrence)).fetchone() is not None
