"""The notifications service: customer and salesperson emails from the order journey, standing
orders and CRM reminders. Handlers queue rendered emails; the sender worker delivers them."""
from pathlib import Path

from runtime.service import Service
from runtime import parking
from services.notifications import api
from services.notifications.handlers import HANDLERS
from services.notifications.sender import SenderWorker

#: the running sender; its relay/transport can be swapped (tests point it at a refusing port)
SENDER = SenderWorker()

SERVICE = Service(
    name="notifications",
    handlers=HANDLERS,
    migrations=Path(__file__).parent / "migrations",
    http_app=api.create_app,
    workers=[SENDER, parking.expiry("notifications")],
    set_aside={
        "failed emails":
            "SELECT notification_id AS id, last_error AS reason, failed_at AS at, kind, recipient, attempts "
            "FROM notifications WHERE status = 'failed' ORDER BY failed_at DESC LIMIT 100",
    },
    backlogs={
        # queued_at is business time (the demo moves it): an age below zero reads as 0
        "emails pending":
            "SELECT count(*), greatest(0, extract(epoch FROM now() - min(queued_at))) "
            "FROM notifications WHERE status = 'pending'",
    },
)
