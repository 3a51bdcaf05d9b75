"""The relay's second line of defence behind a durable broker: when the broker it publishes to is
a new one (an in-memory broker restarted, a cluster rebuilt: every topic empty, its cluster id
changed), the relay publishes again every outbox row it still retains, in order, so consumers
reading the new topics from the start miss nothing (their inboxes absorb what they had)."""
from __future__ import annotations

import threading

import psycopg
import pytest
from prometheus_client import REGISTRY

from runtime import db
from runtime.config import with_dbname
from runtime.embedded import free_port, start_broker
from runtime.relay import OutboxRelay
from runtime.tap import tap
from runtime.topics import ensure_topics
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
TOPIC = "TimerCancelled"  # no consumer in the suite reads it from a private broker


def on_topic(bootstrap: str, key: str) -> list[str]:
    return [r.headers.get("ce_id") for r in tap({"bootstrap.servers": bootstrap}, [TOPIC], follow=False,
                                                idle_exit_s=1.0) if r.key == key]


def test_a_relay_that_finds_a_new_broker_publishes_what_it_retains_again(stack, cfg, unique, tmp_path):
    name = f"relay_reset_{unique}"
    url = with_dbname(cfg.database_url, name)
    db.migrate(url, None)
    key = f"reset-{unique}"
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(20):
            conn.execute("INSERT INTO outbox (event_id, topic, key, value, headers) VALUES (%s, %s, %s, %s, %s)",
                         (f"ev-{i:02d}", TOPIC, key, b'{"n": %d}' % i, '{"ce_id": "ev-%02d"}' % i))
    port = free_port()
    broker = start_broker(tmp_path / "broker-1.log", port)
    relay = None
    try:
        bootstrap = broker.bootstrap
        ensure_topics({"bootstrap.servers": bootstrap}, 1, 1, [TOPIC])
        # checks the broker every second, not every 10 s: the test waits for that check
        relay = OutboxRelay(name, url, {"bootstrap.servers": bootstrap}, broker_check_s=1.0)
        threading.Thread(target=relay.run, daemon=True).start()
        wait_until(lambda: len(on_topic(bootstrap, key)) == 20, timeout=60, message="20 records on the first broker")
        before = REGISTRY.get_sample_value("salesbus_outbox_republished_total", {"service": name}) or 0

        broker.stop()  # in memory: everything it had is gone
        broker = start_broker(tmp_path / "broker-2.log", port)
        ensure_topics({"bootstrap.servers": bootstrap}, 1, 1, [TOPIC])
        ids = wait_until(lambda: (lambda got: got if len(got) >= 20 else None)(on_topic(bootstrap, key)),
                         timeout=60, message="the retained rows republished to the new broker")
        assert ids == [f"ev-{i:02d}" for i in range(20)]  # all of them, in their order
        after = REGISTRY.get_sample_value("salesbus_outbox_republished_total", {"service": name})
        assert after - before == 20
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0] == 0
    finally:
        if relay is not None:
            relay.stop()
        broker.stop()
