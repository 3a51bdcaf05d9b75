"""The handler tier: a service's handlers, workers and HTTP API on a migrated PostgreSQL database
of the test's own (on the session's embedded PostgreSQL), with a clock of its own, and no broker.

    def test_x(orders):                       # a ServiceDB of the orders service
        out = orders.run(ORDERS["OrderPlaced"], placed(...))     # the real inbox, handler, outbox
        assert [e.topic for e in out] == [...]

Each test starts from an empty database, so nothing another test (or another service) did can
reach it; what only the bus can show (delivery, DLQ topics, offsets, the relay, several services
at once) stays in tests/integration.
"""
from __future__ import annotations

import inspect

import pytest

from runtime.config import with_dbname
from runtime.service import load_service
from tests.harness import PrivateDatabases, ServiceDB


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.parent.name == "handlers":
            item.add_marker(pytest.mark.handlers)


@pytest.fixture(scope="session")
def private_databases(cfg) -> PrivateDatabases:
    return PrivateDatabases(cfg)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("handler-keys") / "api_keys.json"
    path.write_text("{}")
    return path


@pytest.fixture
def service_db(private_databases, cfg, keys_file, tmp_path):
    """`service_db("orders")`: that service on a fresh database; dropped after the test."""
    from services.crm.tasks import Policy
    from services.payments.simulated_gateway import SimulatedGateway

    made: dict[str, tuple[str, ServiceDB]] = {}
    # What the process's assembly injects, by parameter name: handlers take the names they declare.
    defaults = {"gateway": SimulatedGateway(tmp_path / "card-gateway.sqlite"),
                "currencies": cfg.supported_currencies(), "policy": Policy()}

    def make(name: str, **deps) -> ServiceDB:
        if name in made:   # one database per service and test: the fixtures and run() share it
            sdb = made[name][1]
            sdb.deps.update(deps)
            return sdb
        service = load_service(name)
        dbname = private_databases.create(service)
        sdb = ServiceDB(service, with_dbname(cfg.database_url, dbname), cfg, keys_file, {**defaults, **deps})
        made[name] = (dbname, sdb)
        return sdb

    yield make
    for dbname, sdb in made.values():
        sdb.close()
        private_databases.drop(dbname)


@pytest.fixture
def orders(service_db) -> ServiceDB:
    return service_db("orders")


@pytest.fixture
def payments(service_db) -> ServiceDB:
    return service_db("payments")


@pytest.fixture
def crm(service_db) -> ServiceDB:
    return service_db("crm")


@pytest.fixture
def notifications(service_db) -> ServiceDB:
    return service_db("notifications")


@pytest.fixture
def scheduler(service_db) -> ServiceDB:
    return service_db("scheduler")


@pytest.fixture
def run(service_db):
    """`run(handler, event, **deps)`: the handler's service (from its module, services.<name>...)
    on the test's database; returns what the delivery put in the outbox. `run.db("crm")` is that
    database (the same one the `crm` fixture gives)."""
    def run(handler, event, **kw):
        module = getattr(inspect.unwrap(handler), "__module__", "") or ""
        parts = module.split(".")
        if len(parts) < 2 or parts[0] != "services":
            raise ValueError(f"{handler!r} is not a service's handler: use service_db(name).run(...)")
        return service_db(parts[1]).run(handler, event, **kw)
    run.db = service_db
    return run
