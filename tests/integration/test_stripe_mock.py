"""The Stripe adapter against stripe-mock, Stripe's own API simulator (a Go module, built here with
`go install` through the Go module proxy): our requests must pass Stripe's published API spec,
and a card order charged and then cancelled goes through our handlers on the real database.

The tier runs when `go` is on PATH and is skipped, saying so, when it is not.

stripe-mock is stateless: whatever is sent, it answers with its bundled fixtures, whose
PaymentIntent waits for a payment method. Stripe's test mode confirms an intent made with a
test token, so the tier starts stripe-mock with those fixtures with one field changed (the
intent's status: succeeded); the adapter's handling of every other status and of declines is in
tests/unit/test_stripe_gateway.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runtime import db
from runtime.clock import WallClock
from runtime.config import Settings
from runtime.embedded import free_port, wait_for_port
from runtime.uow import unit_of_work
from schemas import Money, OrderCancelled
from services.payments.gateway import gateway_from_config
from services.payments.handlers import on_order_cancelled, on_order_placed
from tests.builders import card
from tests.builders import payment_order as order
from tests.integration.test_payments import query

# the first run builds stripe-mock (module download and a Go build: minutes on a busy machine),
# which counts towards the first test's timeout
# slow: in make test-slow (the Go build of stripe-mock alone took 41 s of make test's 10 minutes)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
STRIPE_MOCK = "github.com/stripe/stripe-mock"
STRIPE_MOCK_VERSION = "v0.203.0"   # pinned: its bundled API spec is what our requests are checked against


def _build(cache: Path) -> Path:
    binary = cache / "bin" / "stripe-mock"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "install", f"{STRIPE_MOCK}@{STRIPE_MOCK_VERSION}"], check=True, timeout=900,
                       env={**os.environ, "GOBIN": str(cache / "bin")}, capture_output=True)
    return binary


def _fixtures(tmp: Path) -> Path:
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True).stdout.strip()
    bundled = Path(modcache) / f"{STRIPE_MOCK}@{STRIPE_MOCK_VERSION}" / "embedded" / "openapi" / "fixtures3.json"
    fixtures = json.loads(bundled.read_text())
    fixtures["resources"]["payment_intent"]["status"] = "succeeded"
    out = tmp / "fixtures.json"
    out.write_text(json.dumps(fixtures))
    return out


@pytest.fixture(scope="module")
def stripe_mock(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH: the stripe-mock tier (Stripe adapter against Stripe's API simulator) "
                    "is skipped")
    tmp = tmp_path_factory.mktemp("stripe-mock")
    binary = _build(Path.home() / ".cache" / "salesbus" / f"stripe-mock-{STRIPE_MOCK_VERSION}")
    port = free_port()
    proc = subprocess.Popen([str(binary), "-http-addr", f"127.0.0.1:{port}", "-fixtures", str(_fixtures(tmp))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, "stripe-mock")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def stripe_gateway(stripe_mock, monkeypatch):
    monkeypatch.setenv("SALESBUS_CARD_GATEWAY_STRIPE_API_KEY", "sk_test_123")
    monkeypatch.setenv("SALESBUS_CARD_GATEWAY_STRIPE_API_BASE", stripe_mock)
    return gateway_from_config(Settings(), "stripe")


def test_stripe_accepts_our_charge_and_refund_requests(stripe_gateway, unique):
    amount = Money(amount="24.50", currency="EUR")
    auth = stripe_gateway.authorise("tok_visa", amount, idempotency_key=f"o-{unique}")
    assert auth.authorisation_id.startswith("pi_") and auth.amount == amount
    refund = stripe_gateway.refund(auth.authorisation_id, amount, idempotency_key=f"r-{unique}")
    assert refund.refund_id.startswith("re_")


def test_a_card_order_charged_and_cancelled_through_stripe(cfg, harness, stripe_gateway, unique):
    harness.start("payments")   # its migrations: the handlers below run on the payments database
    pool = db.make_pool(cfg.database_for("payments"), max_size=2, name="stripe-mock-test")
    order_id, customer = f"o-{unique}", f"c-{unique}"
    try:
        with unit_of_work(pool, source="payments", clock=WallClock()) as uow:
            on_order_placed(order(order_id, customer, card("tok_visa_approved")), uow, gateway=stripe_gateway,
                            currencies=cfg.supported_currencies())
            [verified] = [r for r in uow.emitted if r.topic == "PaymentVerified"]
        with unit_of_work(pool, source="payments", clock=WallClock()) as uow:
            on_order_cancelled(OrderCancelled(order_id=order_id, customer_id=customer, reason="changed my mind",
                                              cancelled_at=datetime.now(timezone.utc)), uow, gateway=stripe_gateway)
            [refunded] = [r for r in uow.emitted if r.topic == "OrderRefunded"]
    finally:
        pool.close()
    [paid] = query(cfg, "SELECT status, charge_reference FROM payment WHERE order_id = %s", (order_id,))
    assert paid["status"] == "verified" and paid["charge_reference"].startswith("pi_")
    [row] = query(cfg, "SELECT method, amount, refund_reference FROM refund WHERE order_id = %s", (order_id,))
    assert row["method"] == "card" and str(row["amount"]) == "24.50" and row["refund_reference"].startswith("re_")
    assert verified and refunded
