"""Shared fixtures. The embedded stack (real Tansu broker, real PostgreSQL, real SMTP server)
starts once per test session, and only when an integration or e2e test asks for it."""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Producer

from runtime.config import Settings
from schemas import Event, envelope, to_record


#: The broker the integration and e2e tiers run on: `tansu` (the embedded one, the default) or
#: `kafka` (Apache Kafka, fetched and started by tests/kafka_cluster.py; `make test-kafka`), with
#: SALESBUS_TEST_KAFKA_BROKERS nodes (3 for the fault tier: RF 3, min.insync.replicas=2).
TEST_BROKER = os.environ.get("SALESBUS_TEST_BROKER", "tansu")
KAFKA_BROKERS = int(os.environ.get("SALESBUS_TEST_KAFKA_BROKERS", "1"))
#: On Apache Kafka the tests keep 6 s sessions (production: Kafka's 45 s) because they kill
#: consumers on purpose: a killed member's partitions then move on in seconds, not 45 s. Three
#: partitions per topic, as on Tansu (production: 12).
KAFKA_TEST_SETTINGS = {"SALESBUS_KAFKA_SESSION_TIMEOUT_MS": "6000", "SALESBUS_TOPIC_PARTITIONS": "3"}
_RAN_ON: list[str] = []
# `salesbus up` run by a test records itself in the per-user state file (runtime/stackfile.py):
# here, not in the real ~/.local/state, where the CLI would then find the test's stack
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="salesbus-test-state-")


def pytest_configure(config):
    # each xdist worker starts its own stack: their ports come from disjoint stripes
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        from runtime.embedded import stripe_ports
        stripe_ports(int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture(scope="session")
def stack():
    from runtime.embedded import TANSU_SETTINGS, EmbeddedStack
    from runtime.topics import ensure_topics

    data_dir = Path(tempfile.mkdtemp(prefix="salesbus-test-"))
    cluster = None
    if TEST_BROKER == "kafka":
        from tests.kafka_cluster import KafkaBroker, KafkaCluster
        cluster = KafkaCluster(KAFKA_BROKERS).start()
        _RAN_ON.append(f"Apache Kafka {cluster.version} (KRaft), {cluster.size} broker(s), replication "
                       f"{cluster.replication}, min.insync.replicas {cluster.min_isr}, started in "
                       f"{cluster.started_in_s:.1f}s")
        st = EmbeddedStack(data_dir, broker=KafkaBroker(cluster))
        wanted = {**KAFKA_TEST_SETTINGS, "SALESBUS_TOPIC_REPLICATION": str(cluster.replication)}
    elif TEST_BROKER == "tansu":
        st = EmbeddedStack(data_dir)
        wanted = dict(TANSU_SETTINGS)
    else:
        raise pytest.UsageError(f"SALESBUS_TEST_BROKER={TEST_BROKER!r}: use tansu or kafka")
    # The broker's settings reach the session's own Settings (cfg) and every process a test starts;
    # one set explicitly in the environment wins.
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        st.start()
        ensure_topics({"bootstrap.servers": st.broker.bootstrap}, int(os.environ["SALESBUS_TOPIC_PARTITIONS"]),
                      int(os.environ.get("SALESBUS_TOPIC_REPLICATION", "1")))
        yield st
    finally:
        st.stop()
        if cluster is not None:
            cluster.stop()
        for k in added:
            os.environ.pop(k, None)


def pytest_terminal_summary(terminalreporter):
    for line in _RAN_ON:
        terminalreporter.write_line(f"broker: {line}")


@pytest.fixture(scope="session")
def cfg(stack) -> Settings:
    return Settings(kafka_bootstrap=stack.broker.bootstrap, database_url=stack.postgres.url,
                    smtp_port=stack.mail.port, data_dir=stack.data_dir, batch_timeout_s=0.02)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


class Bus:
    """What an upstream system does: publish events (or raw bytes) straight to a topic."""

    def __init__(self, cfg: Settings):
        # murmur2_random: the Java client's partitioner, as the outbox relay uses (runtime/relay.py),
        # so a key published here lands on the partition our services' own events for it use.
        self.producer = Producer({**cfg.kafka_common(), "enable.idempotence": True, "acks": "all",
                                  "partitioner": "murmur2_random"})

    def publish(self, event: Event, *, event_id: str | None = None, source: str = "upstream-test") -> str:
        ce = envelope(event, source=source, event_id=event_id)
        key, value, headers = to_record(ce)
        self.producer.produce(ce.type, key=key, value=value, headers=headers)
        self.producer.flush(10)
        return ce.id

    def publish_raw(self, topic: str, value: bytes, key: str = "raw", headers: dict | None = None) -> str | None:
        """Publish bytes as they are; returns the record's position (topic:partition:offset, the
        inbox id of a record without a usable event id), or None when the broker did not confirm."""
        where: list[str] = []

        def delivered(err, msg) -> None:
            if err is None:
                where.append(f"{msg.topic()}:{msg.partition()}:{msg.offset()}")
        self.producer.produce(topic, key=key, value=value, headers=headers or {}, on_delivery=delivered)
        self.producer.flush(10)
        return where[0] if where else None


@pytest.fixture(scope="session")
def bus(cfg) -> Bus:
    return Bus(cfg)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; returns its value or fails with `message`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(scope="session")
def harness(cfg, stack):
    """Real services in-process: `harness.start("cart", "payments")`, `harness.client(...)`."""
    from tests.harness import Harness
    h = Harness(cfg, stack.data_dir)
    _HARNESS.append(h)
    yield h
    _HARNESS.clear()
    h.stop()


_HARNESS: list = []  # the session's harness, once a test has asked for it
#: Folders whose test files run every service and leave them for the next file of the same folder
#: (starting all seven again per file would cost seconds each); their data is all their own.
WHOLE_STACK_TIERS = {"e2e", "browser"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The harness resets between test files, so no file's outcome depends on which ran before: an
    integration test starts only the services it tests and expects no other service to react to
    what it publishes (before, a conftest hook ran files in a fixed order instead: test_money had
    to run after the files whose OrderPlaced events its payments service would have decided).
    After an integration file, and after the last file of a whole-stack tier, every running
    service stops and the shared clock (moved by months in the e2e tier) is back at wall time;
    a service started again resumes from its group's committed offsets. Here, after the file's
    own fixtures are torn down, and by `nextitem`: the test this process runs next."""
    try:
        return (yield)
    finally:
        if _HARNESS and (nextitem is None or nextitem.path != item.path):
            after = nextitem.path.parent.name if nextitem is not None else None
            if not (item.path.parent.name in WHOLE_STACK_TIERS and after in WHOLE_STACK_TIERS):
                _HARNESS[0].stop()
                _HARNESS[0].clock.set(datetime.now(timezone.utc))


#: `make test`'s two pytest-xdist workers (`-n 2 --dist loadscope`, with the scheduler below), each
#: with an embedded stack of its own: one runs the integration tier, the other every other tier
#: (browser, e2e, handlers, unit), each in collection order as a plain `pytest` would. Measured on
#: this 2-core machine (fresh-clone CI of 99dcb55): with the pure tiers alone on the second worker
#: it sat idle after about 2 minutes while the bus tiers ran 623 s on the first; the bus tiers
#: mostly wait on the broker and the services, so two stacks share the cores well.
INTEGRATION_TIERS = {"integration", "kafka", "kafka_faults"}


def tier_of(nodeid: str) -> str:
    parts = nodeid.split("::", 1)[0].split("/")
    return "integration" if len(parts) > 2 and parts[1] in INTEGRATION_TIERS else "rest"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Two scopes, the integration tiers and the rest, each whole on one worker. Not xdist_group
    marks and `--dist loadgroup`: on pytest 9.2 those are silently ignored and every test is
    scheduled on its own (pytest-xdist issue 1386), which split a file's module fixtures
    between the workers."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return tier_of(nodeid)
    return TierScheduling(config, log)
