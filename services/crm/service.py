"""The CRM: customer profiles, one timeline per customer (contact log, our emails, order
milestones), salesperson tasks with advance reminders through the scheduler's timers.

Consumes ContactLogged, NotificationSent, SupplierAccountChanged, OrderPlaced, OrderConfirmed,
OrderShipped, OrderCancelled and TimerFired; emits ContactLogged, TaskChanged, TimerRequested,
TimerCancelled and ReminderDue through its outbox.

Settings: SALESBUS_CRM_FOLLOW_UP_DAYS (3), SALESBUS_CRM_REMINDER_LEAD_HOURS (24),
SALESBUS_CRM_REORDER_LEAD_DAYS (3).
"""
from pathlib import Path

from runtime.service import Service
from services.crm.api import create_app
from services.crm.handlers import HANDLERS
from services.crm.tasks import Policy

Policy.from_env()  # a bad SALESBUS_CRM_* value stops the service at start, not each event later

SERVICE = Service(name="crm", handlers=HANDLERS, migrations=Path(__file__).parent / "migrations",
                  http_app=create_app)
