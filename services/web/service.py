"""The web service: server-rendered pages for people (storefront and customer portal, salesperson
console, operator and warehouse console) over the other services' HTTP APIs. It owns no business
data: its database holds who may sign in, sign-in links and sessions."""
from pathlib import Path

from runtime.service import Service
from services.web import app, expiry

SERVICE = Service(
    name="web",
    migrations=Path(__file__).parent / "migrations",
    http_app=app.create_app,
    workers=[expiry.worker],
)
