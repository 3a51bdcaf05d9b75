"""A minimal service for testing the runtime's promises: it counts effects per event.

PROBE_NAME names the service (its consumer group and database), PROBE_TOPICS what it consumes.
An OrderPlaced whose customer_id is "reject" is rejected by the domain; "bug" raises a bug.
An OrderPlaced whose order id is in REJECTING is rejected while it is there (a toggle for
in-process probes: reject, then accept the same record when it is re-driven).
"""
import os
from pathlib import Path

from runtime.errors import Rejected
from runtime.service import Service
from schemas import OrderCancelled

#: order ids rejected while listed here (in-process probes only)
REJECTING: set[str] = set()


def count_effect(event, uow) -> None:
    uow.conn.execute(
        """INSERT INTO effects (aggregate_id, topic, times) VALUES (%s, %s, 1)
           ON CONFLICT (aggregate_id, topic) DO UPDATE SET times = effects.times + 1""",
        (event.key, type(event).__name__))


def on_order_placed(event, uow) -> None:
    if event.customer_id == "reject":
        raise Rejected(f"customer {event.customer_id} is unknown")
    if event.customer_id == "bug":
        raise KeyError("a bug in the handler")
    if event.order_id in REJECTING:
        raise Rejected(f"order {event.order_id} is rejected for now")
    count_effect(event, uow)
    uow.emit(OrderCancelled(order_id=event.order_id, customer_id=event.customer_id,
                            reason="probe", cancelled_at=uow.now()))


HANDLERS = {"OrderPlaced": on_order_placed, "OrderCancelled": count_effect}


def make(name: str, topics: list[str]) -> Service:
    return Service(name=name, handlers={t: HANDLERS[t] for t in topics},
                   migrations=Path(__file__).parent / "probe_migrations")


SERVICE = make(os.environ.get("PROBE_NAME", "probe"), os.environ.get("PROBE_TOPICS", "OrderPlaced").split(","))
