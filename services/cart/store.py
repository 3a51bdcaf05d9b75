"""The cart service's SQL (its own database only). Functions take a connection inside the caller's transaction."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services.cart.pricing import PricedLine, Product

_PRODUCT_COLS = "sku, name, description, unit_price, currency, active, created_at, updated_at"


# --- catalog ---------------------------------------------------------------------------------

def get_product(conn: psycopg.Connection, sku: str, *, lock: bool = False) -> dict | None:
    return conn.execute(f"SELECT {_PRODUCT_COLS} FROM products WHERE sku = %s" + (" FOR UPDATE" if lock else ""),
                        (sku,)).fetchone()


def insert_product(conn: psycopg.Connection, sku: str, name: str, description: str, unit_price: Decimal,
                   currency: str, active: bool, now: datetime) -> dict:
    return conn.execute(
        f"""INSERT INTO products (sku, name, description, unit_price, currency, active, created_at, updated_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PRODUCT_COLS}""",
        (sku, name, description, unit_price, currency, active, now, now)).fetchone()


def update_product(conn: psycopg.Connection, sku: str, name: str, description: str, unit_price: Decimal,
                   currency: str, active: bool, now: datetime) -> dict:
    return conn.execute(
        f"""UPDATE products SET name = %s, description = %s, unit_price = %s, currency = %s, active = %s,
                   updated_at = %s
            WHERE sku = %s RETURNING {_PRODUCT_COLS}""",
        (name, description, unit_price, currency, active, now, sku)).fetchone()


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_products(conn: psycopg.Connection, *, q: str | None, active: bool | None, limit: int,
                    offset: int) -> tuple[list[dict], int]:
    where, params = ["TRUE"], []
    if q:
        where.append("(name ILIKE %s ESCAPE '\\' OR description ILIKE %s ESCAPE '\\' OR sku ILIKE %s ESCAPE '\\')")
        params += [_like_pattern(q)] * 3
    if active is not None:
        where.append("active = %s")
        params.append(active)
    cond = " AND ".join(where)
    count = conn.execute(f"SELECT count(*) AS n FROM products WHERE {cond}", params).fetchone()["n"]
    rows = conn.execute(f"SELECT {_PRODUCT_COLS} FROM products WHERE {cond} ORDER BY sku LIMIT %s OFFSET %s",
                        [*params, limit, offset]).fetchall()
    return rows, count


def as_product(row: dict) -> Product:
    return Product(sku=row["sku"], name=row["name"], unit_price=row["unit_price"], currency=row["currency"].strip(),
                   active=row["active"])


# --- carts -----------------------------------------------------------------------------------

_CART_COLS = "cart_id, customer_id, status, created_at, updated_at, checked_out_at, order_id, standing_order_id"


def create_cart(conn: psycopg.Connection, cart_id: str, customer_id: str, now: datetime) -> dict:
    return conn.execute(
        f"INSERT INTO carts (cart_id, customer_id, created_at, updated_at) VALUES (%s, %s, %s, %s) "
        f"RETURNING {_CART_COLS}", (cart_id, customer_id, now, now)).fetchone()


def get_cart(conn: psycopg.Connection, cart_id: str, customer_id: str, *, lock: bool = False) -> dict | None:
    """The customer's own cart; another customer's cart is simply not found."""
    return conn.execute(
        f"SELECT {_CART_COLS} FROM carts WHERE cart_id = %s AND customer_id = %s" + (" FOR UPDATE" if lock else ""),
        (cart_id, customer_id)).fetchone()


def list_carts(conn: psycopg.Connection, customer_id: str, status: str | None, limit: int,
               offset: int = 0) -> tuple[int, list[dict]]:
    """(how many, this page) of the customer's carts, newest first."""
    where = "customer_id = %s AND (%s::text IS NULL OR status = %s)"
    total = conn.execute(f"SELECT count(*) AS n FROM carts WHERE {where}", (customer_id, status, status)).fetchone()
    rows = conn.execute(f"SELECT {_CART_COLS} FROM carts WHERE {where} ORDER BY created_at DESC, cart_id "
                        "LIMIT %s OFFSET %s", (customer_id, status, status, limit, offset)).fetchall()
    return total["n"], rows


def priced_lines(conn: psycopg.Connection, cart_id: str) -> list[PricedLine]:
    rows = conn.execute(
        f"""SELECT l.quantity, {', '.join('p.' + c for c in _PRODUCT_COLS.split(', '))}
            FROM cart_lines l JOIN products p USING (sku) WHERE l.cart_id = %s ORDER BY l.added_at, l.sku""",
        (cart_id,)).fetchall()
    return [PricedLine(as_product(r), r["quantity"]) for r in rows]


def set_line(conn: psycopg.Connection, cart_id: str, sku: str, quantity: int, now: datetime) -> None:
    conn.execute(
        """INSERT INTO cart_lines (cart_id, sku, quantity, added_at) VALUES (%s, %s, %s, %s)
           ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity""",
        (cart_id, sku, quantity, now))
    touch_cart(conn, cart_id, now)


def delete_line(conn: psycopg.Connection, cart_id: str, sku: str, now: datetime) -> bool:
    gone = conn.execute("DELETE FROM cart_lines WHERE cart_id = %s AND sku = %s", (cart_id, sku)).rowcount == 1
    if gone:
        touch_cart(conn, cart_id, now)
    return gone


def touch_cart(conn: psycopg.Connection, cart_id: str, now: datetime) -> None:
    conn.execute("UPDATE carts SET updated_at = %s WHERE cart_id = %s", (now, cart_id))


def mark_checked_out(conn: psycopg.Connection, cart_id: str, now: datetime, *, order_id: str | None,
                     standing_order_id: str | None) -> None:
    conn.execute(
        """UPDATE carts SET status = 'checked_out', checked_out_at = %s, updated_at = %s, order_id = %s,
                  standing_order_id = %s WHERE cart_id = %s""",
        (now, now, order_id, standing_order_id, cart_id))


# --- idempotent checkout ---------------------------------------------------------------------

def lock_idempotency_key(conn: psycopg.Connection, customer_id: str, key: str) -> None:
    """Two concurrent requests with one key queue here, so only the first places an order."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"checkout:{customer_id}:{key}",))


def find_checkout(conn: psycopg.Connection, customer_id: str, key: str) -> dict | None:
    return conn.execute(
        "SELECT fingerprint, cart_id, status_code, response FROM checkouts "
        "WHERE customer_id = %s AND idempotency_key = %s", (customer_id, key)).fetchone()


def record_checkout(conn: psycopg.Connection, customer_id: str, key: str, fingerprint: str, cart_id: str,
                    status_code: int, response: dict[str, Any], now: datetime) -> None:
    conn.execute(
        """INSERT INTO checkouts (customer_id, idempotency_key, fingerprint, cart_id, status_code, response,
                                  created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (customer_id, key, fingerprint, cart_id, status_code, Jsonb(response), now))
