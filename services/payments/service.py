"""The payments service: charges placed orders (card or supplier account) exactly once and
announces PaymentVerified / PaymentDeclined; keeps supplier accounts and their ledger."""
from pathlib import Path

from runtime.service import Service
from services.payments.api import create_app
from services.payments.handlers import handle_order_placed

SERVICE = Service(
    name="payments",
    handlers={"OrderPlaced": handle_order_placed},
    migrations=Path(__file__).parent / "migrations",
    http_app=create_app,
)
