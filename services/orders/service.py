"""The orders service: owns each order's lifecycle, confirmation number and timeline, places
standing-order occurrences, and ships (endpoint and simulated distribution centres)."""
from pathlib import Path

from runtime.service import Service
from runtime import parking
from services.orders import api
from services.orders.distribution_centre import simulated_distribution_centres
from services.orders.handlers import HANDLERS

SERVICE = Service(
    name="orders",
    handlers=HANDLERS,
    migrations=Path(__file__).parent / "migrations",
    http_app=api.create_app,
    workers=[simulated_distribution_centres, parking.expiry("orders")],
    set_aside={
        "orders the simulated distribution centre could not ship":
            "SELECT order_id AS id, reason, failed_at AS at, centre "
            "FROM simulated_shipment_failures ORDER BY failed_at DESC LIMIT 100",
    },
)
