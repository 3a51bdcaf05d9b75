"""What test files used to copy from each other: a delivery address, money, and plain SQL on a
service's database."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from schemas import Money, OrderPlaced, PaymentVerified

#: A delivery in Croatia (the simulated distribution centres ship it from DC Zagreb).
DELIVERY = {"recipient": "Goods in", "address_lines": ["Obala 1"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"}


def delivery(**changes) -> dict:
    return {**DELIVERY, **changes}


def eur(amount: str) -> dict:
    return {"amount": amount, "currency": "EUR"}


def now() -> datetime:
    return datetime.now(timezone.utc)


def query(url: str, sql: str, params=()) -> list[dict]:
    """Rows as dicts from the database at `url` (one connection per call)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()



def rows_in(cfg, dbname: str, sql: str, params=()) -> list[tuple]:
    """Rows as tuples from the database `dbname` on the session's PostgreSQL."""
    from runtime.config import with_dbname
    with psycopg.connect(with_dbname(cfg.database_url, dbname)) as conn:
        return conn.execute(sql, params).fetchall()


def order_placed(order_id: str, customer_id: str) -> OrderPlaced:
    """Four bulbs and a cable, 12.10 EUR, paid by an approved card (the simulated gateway's token)."""
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "language": "hr",
        "lines": [{"sku": "BULB-60W", "name": "Bulb 60 W", "quantity": 4, "unit_price": eur("1.25")},
                  {"sku": "CABLE-3M", "name": "Cable 3 m", "quantity": 1, "unit_price": eur("7.10")}],
        "total": eur("12.10"), "delivery": DELIVERY,
        "payment": {"mode": "card", "card_token": "tok_visa_approved"}, "placed_at": now()})


def payment_verified(order_id: str, customer_id: str) -> PaymentVerified:
    return PaymentVerified(order_id=order_id, customer_id=customer_id, amount=Money(**eur("12.10")),
                           method="card", charge_reference=f"auth-{order_id}", verified_at=now())


#: the payment of an order charged to the customer's supplier account
ACCOUNT = {"mode": "account"}


def payment_order(order_id: str, customer_id: str, payment: dict, lines=(("BULB-60W", 2, "12.25"),),
                  total: str | None = None, currency: str = "EUR") -> OrderPlaced:
    """An EDI order of `lines` (sku, quantity, unit price), paid as `payment` says."""
    total = total or str(sum(Decimal(price) * qty for _, qty, price in lines))
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": customer_id, "channel": "edi",
        "lines": [{"sku": sku, "name": sku.title(), "quantity": qty,
                   "unit_price": {"amount": price, "currency": currency}} for sku, qty, price in lines],
        "total": {"amount": total, "currency": currency}, "delivery": DELIVERY,
        "payment": payment, "placed_at": datetime.now(timezone.utc)})


def card(token: str) -> dict:
    return {"mode": "card", "card_token": token}
