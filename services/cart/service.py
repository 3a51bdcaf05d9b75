"""The cart service: the store's HTTP API. It consumes nothing; it emits ProductChanged,
OrderPlaced and StandingOrderRequested through its outbox."""
from pathlib import Path

from runtime.service import Service
from services.cart.api import create_app

SERVICE = Service(name="cart", migrations=Path(__file__).parent / "migrations", http_app=create_app)
