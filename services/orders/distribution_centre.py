"""Shipping: the one code path behind POST /orders/{id}/shipments and the simulated centres.

The simulator (a Service worker) stands in for the real warehouses in the demo and on a
developer's machine: when Settings.dc_ship_delay_s >= 0 it ships every confirmed order whose
confirmation is at least that old (by the service clock) from "DC Zagreb" (central and south-east
Europe) or "DC Lyon" (everywhere else). A negative delay switches it off, as in production,
where warehouses call the endpoint (`salesbus ship`) or publish OrderShipped themselves.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from runtime.db import TRANSIENT_DB_ERRORS
from runtime.service import ServiceContext
from schemas import deterministic_id
from services.orders import handlers, store
from services.orders.lifecycle import Decision

log = logging.getLogger(__name__)

POLL_S = 0.5
#: delivery countries served from Zagreb; the rest ship from Lyon
ZAGREB_COUNTRIES = frozenset({"HR", "SI", "BA", "RS", "ME", "MK", "AL", "HU", "AT", "CZ", "SK", "PL", "RO",
                              "BG", "GR", "IT", "DE", "UA", "MD", "LT", "LV", "EE"})
CARRIERS = {"DC Zagreb": ("DHL Freight", "JD"), "DC Lyon": ("Geodis", "GE")}


def record_shipment(ctx: ServiceContext, order_id: str, carrier: str, tracking_number: str,
                    distribution_centre: str, *, reported_by: str) -> tuple[Decision, dict] | None:
    """Ship the order and announce it (OrderShipped), in one transaction. None for an unknown
    order; otherwise the lifecycle's decision and the order as it stands after it."""
    with ctx.unit_of_work() as uow:
        order = store.get_order(uow.conn, order_id, lock=True)
        if order is None:
            return None
        decision = handlers.ship(uow, order, carrier, tracking_number, distribution_centre, uow.now(),
                                 reported_by=reported_by, announce=True)
        return decision, store.get_order(uow.conn, order_id)


def centre_for(country: str | None) -> str:
    return "DC Zagreb" if country in ZAGREB_COUNTRIES else "DC Lyon"


def simulated_tracking_number(order_id: str, prefix: str) -> str:
    # Derived from the order, so a retried shipment reports the same parcel.
    digest = int(deterministic_id("tracking", order_id).replace("-", ""), 16)
    return f"{prefix}{digest % 10**12:012d}"


def ship_due_orders(ctx: ServiceContext, delay: timedelta, *, now: datetime | None = None) -> list[str]:
    """Ship every order confirmed at least `delay` ago; returns the ids it shipped."""
    cutoff = (now or ctx.clock.now()) - delay
    with ctx.pool.connection() as conn:
        due = store.awaiting_shipment(conn, cutoff)
    shipped = []
    for row in due:
        centre = centre_for(row["country"])
        carrier, prefix = CARRIERS[centre]
        result = record_shipment(ctx, row["order_id"], carrier, simulated_tracking_number(row["order_id"], prefix),
                                 centre, reported_by=f"{centre} (simulated)")
        if result is not None and result[0].verdict == "apply":
            shipped.append(row["order_id"])
    return shipped


def simulated_distribution_centres(ctx: ServiceContext) -> None:
    """Service worker: runs until ctx.stopping is set."""
    delay_s = ctx.settings.dc_ship_delay_s
    if delay_s < 0:
        ctx.stopping.wait()  # switched off; stay alive so the process reports healthy
        return
    delay = timedelta(seconds=delay_s)
    log.info("simulated distribution centres ship confirmed orders after %ss", delay_s)
    while not ctx.stopping.is_set():
        try:
            for order_id in ship_due_orders(ctx, delay):
                log.info("simulated distribution centre shipped order %s", order_id)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("distribution centre simulator: database unavailable, retrying: %s", exc)
        ctx.stopping.wait(POLL_S)
