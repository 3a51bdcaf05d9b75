"""A service for the containment tests: records what it handled, in order, and fails on demand.

An OrderPlaced whose customer has a row in `failing` fails as that row says: `transient`
(a TransientError, like a card gateway timing out), `disconnect` (the handler's connection
is terminated: the database is away as far as the runtime can tell), `limit` (PostgreSQL's
"index row size exceeds btree maximum", a program-limit error that no retry can fix).
"""
from __future__ import annotations

from pathlib import Path

from runtime.errors import TransientError
from runtime.service import Service


def on_order_placed(event, uow) -> None:
    row = uow.conn.execute("SELECT how FROM failing WHERE customer_id = %s", (event.customer_id,)).fetchone()
    how = row["how"] if row else None
    if how == "transient":
        raise TransientError(f"gateway timed out for {event.customer_id}")
    if how == "disconnect":
        uow.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    if how == "limit":
        # ~10 kB of incompressible text into a btree-indexed column: SQLSTATE 54000
        uow.conn.execute("INSERT INTO wide (v) SELECT string_agg(md5(random()::text), '') "
                         "FROM generate_series(1, 320)")
    uow.conn.execute("INSERT INTO handled (aggregate_id, event_id, customer_id) VALUES (%s, %s, %s)",
                     (event.order_id, uow.cause.id if uow.cause else "", event.customer_id))


def on_order_cancelled(event, uow) -> None:
    uow.conn.execute("INSERT INTO handled (aggregate_id, event_id, customer_id) VALUES (%s, %s, %s)",
                     (event.order_id, uow.cause.id if uow.cause else "", event.customer_id))


HANDLERS = {"OrderPlaced": on_order_placed, "OrderCancelled": on_order_cancelled}


def make(name: str) -> Service:
    return Service(name=name, handlers=HANDLERS, migrations=Path(__file__).parent / "containment_migrations")
