"""A handler asking for a dependency its service does not provide stops the process at start
(runtime/service.py binds the table once, runtime/inject.py), before any loop runs or any event
is consumed — not at the first event, which would dead-letter or park it."""
from __future__ import annotations

import pytest

from runtime.clock import WallClock
from runtime.inject import MissingDependency
from runtime.service import Service, ServiceProcess

pytestmark = pytest.mark.integration


def on_order_placed(event, uow, *, gateway, currencies) -> None:
    raise AssertionError("never called: the process must not start")


def test_a_process_whose_handler_asks_for_an_unprovided_dependency_does_not_start(cfg, unique):
    svc = Service(name=f"inject_{unique}", handlers={"OrderPlaced": on_order_placed},
                  dependencies=lambda ctx: {"gateway": object()})
    proc = ServiceProcess(svc, cfg, WallClock())
    with pytest.raises(MissingDependency, match=r"OrderPlaced: .*:on_order_placed needs currencies"):
        proc.start()
    assert proc.threads == [] and proc.loops == []   # no relay, consumer or worker was started
    assert proc.pool.closed


def on_order_shipped(event, uow, *, currencies) -> None:
    pass  # the consumer may hand it the topic's history: nothing to do with it


def test_the_same_process_starts_when_every_dependency_is_provided(cfg, unique):
    svc = Service(name=f"inject_ok_{unique}", handlers={"OrderShipped": on_order_shipped},
                  dependencies=lambda ctx: {"currencies": ctx.settings.supported_currencies()})
    proc = ServiceProcess(svc, cfg, WallClock())
    proc.start()
    try:
        assert proc.ctx.dependencies == {"currencies": cfg.supported_currencies()}
        bound = proc.consumer_processor().handlers["OrderShipped"]
        assert bound.func is on_order_shipped and bound.keywords == {"currencies": cfg.supported_currencies()}
    finally:
        proc.stop()
