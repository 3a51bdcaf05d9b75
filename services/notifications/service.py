"""The notifications service: customer and salesperson emails from the order journey, standing
orders and CRM reminders. Handlers queue rendered emails; the sender worker delivers them."""
from pathlib import Path

from runtime.service import Service
from services.notifications.handlers import HANDLERS
from services.notifications.sender import SenderWorker

#: the running sender; its relay/transport can be swapped (tests point it at a refusing port)
SENDER = SenderWorker()

SERVICE = Service(
    name="notifications",
    handlers=HANDLERS,
    migrations=Path(__file__).parent / "migrations",
    workers=[SENDER],
)
