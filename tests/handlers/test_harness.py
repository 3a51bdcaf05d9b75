"""The handler tier's own promises: dependencies bound by parameter name (so one test serves a
handler before and after it gains or loses a dependency), a missing one refused loudly, and
run() going through the real inbox."""
from __future__ import annotations

import pytest

from schemas import OrderPlaced
from tests.builders import DELIVERY, eur, now
from tests.harness import bind


def handler_with(event, uow, *, gateway, currencies=frozenset({"EUR"})):
    return gateway, currencies


def plain_handler(event, uow):
    return "plain"


def test_bind_passes_only_the_dependencies_a_handler_declares():
    bound = bind(handler_with, {"gateway": "gw", "policy": "unused", "currencies": {"CHF"}})
    assert bound("event", "uow") == ("gw", {"CHF"})
    assert bind(plain_handler, {"gateway": "gw"})("event", "uow") == "plain"
    assert bind(handler_with, {"gateway": "gw"})("event", "uow") == ("gw", frozenset({"EUR"}))   # its default


def test_a_required_dependency_nobody_passes_is_a_type_error_not_a_dead_letter():
    with pytest.raises(TypeError, match="gateway"):
        bind(handler_with, {"currencies": {"EUR"}})


def order() -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": "o-1", "customer_id": "c-1", "language": "hr",
        "lines": [{"sku": "BULB-60W", "name": "Bulb 60 W", "quantity": 2, "unit_price": eur("1.25")}],
        "total": eur("2.50"), "delivery": DELIVERY, "payment": {"mode": "card", "card_token": "tok_visa_approved"},
        "placed_at": now()})


def test_run_finds_the_handlers_service_and_shares_its_database_with_the_fixture(run, orders):
    """The example in docs/writing-a-service.md, step 7."""
    from services.orders.handlers import on_order_placed

    assert run(on_order_placed, order(), event_id="ev-1") == []
    assert run.db("orders") is orders
    assert orders.inbox_outcome("ev-1") == "handled"
    assert orders.query("SELECT status FROM orders") == [{"status": "placed"}]
    assert run(on_order_placed, order(), event_id="ev-1") == []   # redelivered: a duplicate
    assert orders.query("SELECT count(*) AS n FROM order_timeline WHERE order_id = 'o-1'") == [{"n": 1}]


def test_each_test_starts_from_an_empty_database(orders):
    """The one before put an order in its own database; this one sees none (no ordering between tests)."""
    assert orders.query("SELECT count(*) AS n FROM orders") == [{"n": 0}]
    assert orders.query("SELECT count(*) AS n FROM inbox") == [{"n": 0}]
