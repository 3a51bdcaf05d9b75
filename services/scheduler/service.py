"""The scheduler: standing orders (RecurringOrderDue once per occurrence) and timers for other services."""
from pathlib import Path

from runtime.service import Service
from services.scheduler.handlers import HANDLERS
from services.scheduler.api import create_app
from services.scheduler.ticker import worker

SERVICE = Service(
    name="scheduler",
    handlers=HANDLERS,
    migrations=Path(__file__).parent / "migrations",
    http_app=create_app,
    workers=[worker],
    set_aside={
        "failed standing orders":
            "SELECT standing_order_id AS id, failed_reason AS reason, failed_at AS at, customer_id "
            "FROM standing_orders WHERE status = 'failed' ORDER BY failed_at DESC LIMIT 100",
        "failed timers":
            "SELECT timer_id AS id, failed_reason AS reason, failed_at AS at, owner, kind "
            "FROM timers WHERE status = 'failed' ORDER BY failed_at DESC LIMIT 100",
    },
)
