"""The payments service: charges placed orders (card or supplier account) exactly once and
announces PaymentVerified / PaymentDeclined; keeps supplier accounts, their invoices, payments
received, credit notes, refunds, overdue reminders and holds, and the double-entry ledger."""
from pathlib import Path

from runtime.service import Service, ServiceContext
from services.payments.api import create_app
from services.payments.gateway import gateway_from_config
from services.payments.handlers import HANDLERS
from services.payments.overdue import worker as overdue_worker


def dependencies(ctx: ServiceContext) -> dict:
    # one gateway per process: the adapter Settings.card_gateway names, with its own settings
    return {"gateway": gateway_from_config(ctx.settings), "currencies": ctx.settings.supported_currencies()}


SERVICE = Service(
    name="payments",
    handlers=HANDLERS,
    dependencies=dependencies,
    migrations=Path(__file__).parent / "migrations",
    http_app=create_app,
    workers=[overdue_worker],
)
