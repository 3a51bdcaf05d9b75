"""The distribution centres: which one serves an order, and the simulated ones that ship by themselves.

Shipping itself is commands.ship, the one code path behind POST /orders/{id}/shipments, the
OrderShipped handler and the simulator.

The simulator (a Service worker) stands in for the real warehouses in the demo and on a
developer's machine: when Settings.dc_ship_delay_s >= 0 it ships every confirmed order whose
confirmation is at least that old (by the service clock) from "DC Zagreb" (central and south-east
Europe) or "DC Lyon" (everywhere else). A negative delay switches it off, as in production,
where warehouses call the endpoint (`salesbus ship`) or publish OrderShipped themselves.

One order that cannot be shipped (its shipment raises for good: a constraint it violates, data
that makes no valid OrderShipped) must not stop the simulator: it used to take the process down,
and after the restart the same order came first again. Its shipment runs in a savepoint inside
the transaction that holds the order's lock; a permanent failure rolls back just that, and the
order is recorded in `simulated_shipment_failures` (reason, time; counted in
salesbus_set_aside_total, listed by `salesbus set-aside`), which the simulator's query skips.
The order itself stays `confirmed`: a real warehouse (the endpoint) can still ship it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta


import psycopg

from runtime.containment import SET_ASIDE, Fault, classify, guarded_loop, reason_of
from runtime.service import ServiceContext
from runtime.uow import UnitOfWork
from schemas import deterministic_id
from services.orders import commands, store

log = logging.getLogger(__name__)

POLL_S = 0.5
#: confirmed orders looked at per pass; a full batch is followed by the next at once
BATCH = 50
#: delivery countries served from Zagreb; the rest ship from Lyon
ZAGREB_COUNTRIES = frozenset({"HR", "SI", "BA", "RS", "ME", "MK", "AL", "HU", "AT", "CZ", "SK", "PL", "RO",
                              "BG", "GR", "IT", "DE", "UA", "MD", "LT", "LV", "EE"})
CARRIERS = {"DC Zagreb": ("DHL Freight", "JD"), "DC Lyon": ("Geodis", "GE")}
#: an order's centre in SQL, for the warehouse's lookups: the one that shipped it, else the one
#: serving its delivery country (centre_for). Built from the constants above, never from input.
CENTRE_SQL = ("COALESCE(distribution_centre, CASE WHEN delivery->>'country' IN ("
              + ", ".join(f"'{c}'" for c in sorted(ZAGREB_COUNTRIES)) + ") THEN 'DC Zagreb' ELSE 'DC Lyon' END)")


def centre_for(country: str | None) -> str:
    return "DC Zagreb" if country in ZAGREB_COUNTRIES else "DC Lyon"


def simulated_tracking_number(order_id: str, prefix: str) -> str:
    # Derived from the order, so a retried shipment reports the same parcel.
    digest = int(deterministic_id("tracking", order_id).replace("-", ""), 16)
    return f"{prefix}{digest % 10**12:012d}"


def awaiting_simulated_shipment(conn: psycopg.Connection, confirmed_before: datetime,
                                limit: int = BATCH) -> list[dict]:
    """store.awaiting_shipment without the orders the simulator has set aside (the simulator's
    own query: the set-aside table is the simulator's, not the order lifecycle's)."""
    return conn.execute(
        """SELECT o.order_id, o.delivery->>'country' AS country FROM orders o
           WHERE o.status = 'confirmed' AND o.confirmed_at <= %s
             AND NOT EXISTS (SELECT 1 FROM simulated_shipment_failures f WHERE f.order_id = o.order_id)
           ORDER BY o.confirmed_at LIMIT %s""", (confirmed_before, limit)).fetchall()




def ship_simulated(ctx: ServiceContext, order_id: str, country: str | None) -> bool:
    """Ship one order from its simulated centre; True when it shipped. A permanent failure sets
    the order aside (the simulator skips it from then on); anything else propagates."""
    centre = centre_for(country)
    carrier, prefix = CARRIERS[centre]
    with ctx.unit_of_work() as uow:
        order = store.get_order(uow.conn, order_id, lock=True)
        if order is None:
            return False
        try:
            with uow.savepoint():
                decision = commands.ship(uow, order, carrier, simulated_tracking_number(order_id, prefix), centre,
                                         uow.now(), reported_by=f"{centre} (simulated)", announce=True)
        except Exception as exc:
            if classify(exc, uow.conn) is not Fault.PERMANENT:
                raise   # the database is away, or a lock: the pass is retried by the guard
            reason = reason_of(exc)
            log.error("simulated distribution centre cannot ship order %s, set aside: %s", order_id, reason,
                      exc_info=exc)
            with uow.conn.transaction():
                uow.conn.execute(
                    """INSERT INTO simulated_shipment_failures (order_id, centre, reason, failed_at)
                       VALUES (%s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING""",
                    (order_id, centre, reason, uow.now()))
            SET_ASIDE.labels("orders", "simulated_shipments", type(exc).__name__).inc()
            return False
        return decision.verdict == "apply"


def ship_due_orders(ctx: ServiceContext, delay: timedelta, *, now: datetime | None = None,
                    limit: int = BATCH) -> list[str]:
    """Ship every order confirmed at least `delay` ago (up to `limit`); returns the ids it shipped."""
    cutoff = (now or ctx.clock.now()) - delay
    with ctx.pool.connection() as conn:
        due = awaiting_simulated_shipment(conn, cutoff, limit)
    return [row["order_id"] for row in due if ship_simulated(ctx, row["order_id"], row["country"])]


def simulated_distribution_centres(ctx: ServiceContext) -> None:
    """Service worker: runs until ctx.stopping is set, under guarded_loop (a pass that raises is
    retried with backoff and shown as a stall; it never ends the process)."""
    delay_s = ctx.settings.dc_ship_delay_s
    if delay_s < 0:
        ctx.stopping.wait()  # switched off; stay alive so the process reports healthy
        return
    delay = timedelta(seconds=delay_s)
    log.info("simulated distribution centres ship confirmed orders after %ss", delay_s)

    def one_pass() -> bool:
        shipped = ship_due_orders(ctx, delay)
        for order_id in shipped:
            log.info("simulated distribution centre shipped order %s", order_id)
        return len(shipped) >= BATCH

    guarded_loop("orders", "distribution centre", one_pass, ctx.stopping, stalls=ctx.stalls, idle_s=POLL_S)
