"""The CRM: customer profiles, one timeline per customer (contact log, our emails, order
milestones), salesperson tasks with advance reminders through the scheduler's timers.

Consumes ContactLogged, NotificationSent, SupplierAccountChanged, OrderPlaced, OrderConfirmed,
OrderShipped, OrderCancelled, TimerFired, InvoiceOverdue and StandingOrderChanged (handlers.py
HANDLERS); emits ContactLogged, TaskChanged, TimerRequested, TimerCancelled and ReminderDue
through its outbox.

Its task timing and the owner of customers learned from a first order are the Policy built from
Settings (crm_follow_up_days, crm_reminder_lead_hours, crm_reorder_lead_days,
crm_new_customer_salesperson, crm_new_customer_salesperson_email), given to handlers and the
API as `policy`; the API's description shows them.
"""
from pathlib import Path

from runtime import parking
from runtime.service import Service, ServiceContext
from services.crm.api import create_app
from services.crm.handlers import HANDLERS
from services.crm.tasks import Policy


def dependencies(ctx: ServiceContext) -> dict:
    return {"policy": Policy.from_settings(ctx.settings)}


SERVICE = Service(name="crm", handlers=HANDLERS, dependencies=dependencies,
                  migrations=Path(__file__).parent / "migrations",
                  http_app=create_app, workers=[parking.expiry("crm")])
