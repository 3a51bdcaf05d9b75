"""Shared fixtures. The embedded stack (real Tansu broker, real PostgreSQL, real SMTP server)
starts once per test session, and only when an integration or e2e test asks for it."""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from runtime.config import Settings
from schemas import Event, envelope, to_record


@pytest.fixture(scope="session")
def stack():
    from runtime.embedded import EmbeddedStack
    from runtime.topics import ensure_topics

    data_dir = Path(tempfile.mkdtemp(prefix="salesbus-test-"))
    st = EmbeddedStack(data_dir).start()
    ensure_topics({"bootstrap.servers": st.broker.bootstrap})
    yield st
    st.stop()


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
        self.producer = Producer({**cfg.kafka_common(), "enable.idempotence": True, "acks": "all"})

    def publish(self, event: Event, *, event_id: str | None = None, source: str = "upstream-test") -> str:
        ce = envelope(event, source=source, event_id=event_id)
        key, value, headers = to_record(ce)
        self.producer.produce(ce.type, key=key, value=value, headers=headers)
        self.producer.flush(10)
        return ce.id

    def publish_raw(self, topic: str, value: bytes, key: str = "raw", headers: dict | None = None) -> None:
        self.producer.produce(topic, key=key, value=value, headers=headers or {})
        self.producer.flush(10)


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
    yield h
    h.stop()


def pytest_collection_modifyitems(items):
    """Unit, then integration, then end-to-end tests. The e2e tests run every service at once and
    move the shared clock by months; integration tests start only the services they test and
    expect no other service to react to the events they publish, so they go first."""
    rank = {"unit": 0, "integration": 1, "e2e": 2}
    items.sort(key=lambda item: rank.get(item.path.parent.name, 1))
