"""The scheduler: standing orders (RecurringOrderDue once per occurrence) and timers for other services."""
from pathlib import Path

from runtime.service import Service
from services.scheduler import handlers
from services.scheduler.api import create_app
from services.scheduler.ticker import worker

SERVICE = Service(
    name="scheduler",
    handlers={
        "StandingOrderRequested": handlers.handle_standing_order_requested,
        "TimerRequested": handlers.handle_timer_requested,
        "TimerCancelled": handlers.handle_timer_cancelled,
    },
    migrations=Path(__file__).parent / "migrations",
    http_app=create_app,
    workers=[worker],
)
