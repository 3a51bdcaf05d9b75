"""Handlers get their dependencies by keyword-only parameter name, bound once at assembly
(runtime/inject.py); a name nobody provides fails then, not at the first event."""
from __future__ import annotations

import importlib
import threading
from types import SimpleNamespace

import pytest

from runtime.clock import WallClock
from runtime.config import Settings
from runtime.inject import MissingDependency, bind, inject, wanted
from runtime.service import ServiceContext

SERVICES_WITH_HANDLERS = ("payments", "orders", "notifications", "crm", "scheduler")


def on_order_placed(event, uow, *, gateway, currencies):
    return event, uow, gateway, currencies


def on_order_shipped(event, uow):
    return event, uow


def on_with_default(event, uow, *, policy="default policy"):
    return policy


def test_keyword_only_parameters_are_bound_by_name_and_nothing_else_is_passed():
    deps = {"gateway": "the gateway", "currencies": frozenset({"EUR"}), "policy": "unused here"}
    bound = bind(on_order_placed, deps)
    assert bound("event", "uow") == ("event", "uow", "the gateway", frozenset({"EUR"}))
    # a handler that asks for nothing is itself: no wrapper, nothing passed
    assert bind(on_order_shipped, deps) is on_order_shipped


def test_a_bound_handler_keeps_its_name_for_logs_and_the_contract():
    bound = bind(on_order_placed, {"gateway": 1, "currencies": 2})
    assert (bound.__module__, bound.__qualname__) == (__name__, "on_order_placed")


def test_an_optional_dependency_is_bound_when_provided_and_keeps_its_default_otherwise():
    assert bind(on_with_default, {})("e", "u") == "default policy"
    assert bind(on_with_default, {"policy": "injected"})("e", "u") == "injected"
    assert wanted(on_with_default) == (set(), {"policy"})


def test_a_handler_asking_for_an_unknown_dependency_fails_at_assembly_naming_it():
    with pytest.raises(MissingDependency) as err:
        inject({"OrderPlaced": on_order_placed, "OrderShipped": on_order_shipped}, {"gateway": "g"},
               service="payments")
    message = str(err.value)
    assert "payments handler for OrderPlaced" in message
    assert f"{__name__}:on_order_placed needs currencies" in message
    assert "provided: gateway" in message


def test_a_service_without_dependencies_cannot_bind_a_handler_that_needs_one():
    with pytest.raises(MissingDependency, match="needs currencies, gateway.*provided: none"):
        inject({"OrderPlaced": on_order_placed}, {})


@pytest.mark.parametrize("name", SERVICES_WITH_HANDLERS)
def test_every_service_provides_what_its_handlers_ask_for(name, tmp_path):
    """What start-up does (runtime/service.py), without a broker or database: a handler that
    asks for a name its service's dependencies(ctx) lacks fails here."""
    svc = importlib.import_module(f"services.{name}.service").SERVICE
    ctx = ServiceContext(svc, Settings(data_dir=tmp_path), None, WallClock(), threading.Event())
    deps = svc.dependencies(ctx) if svc.dependencies else {}
    bound = inject(svc.handlers, deps, service=name)
    assert set(bound) == set(svc.handlers)
    for topic, handler in svc.handlers.items():
        required, _ = wanted(handler)
        assert required <= set(deps), (topic, required)


def test_payments_handlers_get_the_gateway_and_currencies_the_settings_name(tmp_path):
    from services.payments.service import SERVICE
    from services.payments.simulated_gateway import SimulatedGateway
    cfg = Settings(data_dir=tmp_path, currencies="EUR,HRK", card_gateway="simulated")
    deps = SERVICE.dependencies(SimpleNamespace(settings=cfg))
    assert isinstance(deps["gateway"], SimulatedGateway)
    assert deps["currencies"] == frozenset({"EUR", "HRK"})


def test_crm_handlers_get_the_policy_built_from_settings():
    from datetime import timedelta

    from services.crm.service import SERVICE
    from services.crm.tasks import Policy
    deps = SERVICE.dependencies(SimpleNamespace(settings=Settings(crm_reminder_lead_hours=2.0)))
    assert deps["policy"] == Policy(reminder_lead=timedelta(hours=2))
