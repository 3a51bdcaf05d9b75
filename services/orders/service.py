"""The orders service: owns each order's lifecycle, confirmation number and timeline, places
standing-order occurrences, and ships (endpoint and simulated distribution centres)."""
from pathlib import Path

from runtime.service import Service
from services.orders import api, handlers, standing_orders
from services.orders.distribution_centre import simulated_distribution_centres

SERVICE = Service(
    name="orders",
    handlers={
        "OrderPlaced": handlers.on_order_placed,
        "PaymentVerified": handlers.on_payment_verified,
        "PaymentDeclined": handlers.on_payment_declined,
        "OrderShipped": handlers.on_order_shipped,
        "ProductChanged": standing_orders.on_product_changed,
        "RecurringOrderDue": standing_orders.on_recurring_order_due,
    },
    migrations=Path(__file__).parent / "migrations",
    http_app=api.create_app,
    workers=[simulated_distribution_centres],
)
