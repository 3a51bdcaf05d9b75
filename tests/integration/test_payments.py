"""Payments on the real stack: an order published straight to the bus (as an upstream system
does), charged by the running service through its gateway, the outcome read back from the broker.
Every other payments behaviour (declines, timeouts, accounts, upstream faults, at most once per
order, the API) is tested on the handler tier (tests/handlers/test_payments.py)."""
from __future__ import annotations


import psycopg
import pytest
from psycopg.rows import dict_row

from runtime.tap import tap
from schemas import OrderPlaced, deterministic_id
from services.payments.simulated_gateway import SimulatedGateway, state_path
from tests.builders import card
from tests.builders import payment_order as order
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
OUTCOMES = ["PaymentVerified", "PaymentDeclined"]


@pytest.fixture(scope="module")
def payments(harness):
    harness.start("payments")
    return harness


@pytest.fixture(scope="module")
def gateway(cfg) -> SimulatedGateway:
    """The simulated gateway's own memory: the state file the Settings given to the service name
    (the service builds its gateway from them once, services/payments/service.py)."""
    return SimulatedGateway(state_path(cfg))


def query(cfg, sql: str, params=()) -> list[dict]:
    with psycopg.connect(cfg.database_for("payments"), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def outcomes(cfg, order_id: str) -> list[dict]:
    """PaymentVerified/PaymentDeclined on the broker for this order (CloudEvent dicts)."""
    return [{**r.event(), "topic": r.topic}
            for r in tap(cfg.kafka_common(), OUTCOMES, follow=False, idle_exit_s=1.0, keys={order_id})]


def settled(cfg, order_id: str, *event_ids: str) -> list[dict]:
    """Wait until payments consumed these events, decided the order and published what it emitted;
    then return what is on the broker for the order."""
    wait_until(lambda: len(query(cfg, "SELECT 1 FROM inbox WHERE event_id = ANY(%s)", (list(event_ids),)))
               == len(event_ids), timeout=60, message=f"payments to consume {event_ids}")
    wait_until(lambda: query(cfg, "SELECT 1 FROM payment WHERE order_id = %s AND status <> 'claimed'", (order_id,))
               and not query(cfg, "SELECT 1 FROM outbox WHERE key = %s AND published_at IS NULL", (order_id,)),
               timeout=60, message=f"the payment decision for {order_id} to be published")
    return outcomes(cfg, order_id)


def the_outcome(cfg, bus, event: OrderPlaced) -> dict:
    found = settled(cfg, event.order_id, bus.publish(event))
    assert len(found) == 1, found
    assert found[0]["id"] == deterministic_id(event.order_id, "payment")
    return found[0]


# --- card -----------------------------------------------------------------------------------------

def test_card_approved_is_charged_and_verified(cfg, bus, payments, gateway, unique):
    ev = the_outcome(cfg, bus, order(f"o-{unique}", f"c-{unique}", card("tok_visa_approved")))
    assert ev["topic"] == "PaymentVerified"
    assert ev["data"]["amount"] == {"amount": "24.50", "currency": "EUR"}
    assert ev["data"]["method"] == "card" and ev["data"]["charge_reference"].startswith("auth_")
    assert gateway.charges_for(f"o-{unique}") == 1
