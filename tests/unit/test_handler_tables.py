"""One place and one name for "who handles X": each consuming service's HANDLERS table at the
foot of its handlers.py, and the AsyncAPI document naming each handler (`x-handler`)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from schemas.catalog import UPSTREAM_PRODUCERS, constructed_events, producers
from schemas.generate import ASYNCAPI, SERVICES

ROOT = Path(__file__).resolve().parents[2]
CONSUMERS = [s for s in SERVICES if importlib.import_module(f"services.{s}.service").SERVICE.handlers]


@pytest.mark.parametrize("name", CONSUMERS)
def test_the_service_assembles_the_table_at_the_foot_of_its_handlers_module(name):
    svc = importlib.import_module(f"services.{name}.service").SERVICE
    handlers = importlib.import_module(f"services.{name}.handlers")
    assert svc.handlers is handlers.HANDLERS
    tree = ast.parse((ROOT / "services" / name / "handlers.py").read_text())
    last = tree.body[-1]
    assert isinstance(last, ast.Assign) and [t.id for t in last.targets] == ["HANDLERS"], \
        f"services/{name}/handlers.py: HANDLERS is not its last statement"
    for topic, handler in svc.handlers.items():
        assert handler.__name__.startswith("on_"), (name, topic, handler.__name__)


def test_every_receive_operation_names_the_function_that_handles_it():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    receives = {k: op for k, op in doc["operations"].items() if op["action"] == "receive"}
    expected = sum(len(importlib.import_module(f"services.{s}.service").SERVICE.handlers) for s in CONSUMERS)
    assert len(receives) == expected
    for key, op in receives.items():
        service, _, topic = key.partition("-receives-")
        module, _, function = op["x-handler"].partition(":")
        handler = getattr(importlib.import_module(module), function)
        assert importlib.import_module(f"services.{service}.service").SERVICE.handlers[topic] is handler, key


def test_producers_are_the_services_whose_code_constructs_the_event():
    classes = {"PaymentVerified": "PaymentVerified", "OrderPlaced": "OrderPlaced", "TimerFired": "TimerFired"}
    assert constructed_events(ROOT / "services" / "payments", classes) == {"PaymentVerified"}
    made = producers(("cart", "orders", "scheduler"), classes)
    assert made["OrderPlaced"] == ["cart", "orders", *UPSTREAM_PRODUCERS["OrderPlaced"]]
    assert made["TimerFired"] == ["scheduler"]
    assert "PaymentVerified" not in made  # payments was not among the services read


def test_upstream_producers_are_only_for_topics_that_exist():
    from schemas import REGISTRY
    assert set(UPSTREAM_PRODUCERS) <= set(REGISTRY)
