"""Apache Kafka itself knows every setting deploy/kafka states, and takes the topic settings as
deploy/ applies them (at creation, and the dead letters' retention altered afterwards, as
compose.yaml's topic-config job does). The values are checked against the fault tier's cluster by
tests/unit/test_deploy_manifests.py; this checks the names and their acceptance by the broker."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)

from tests.conftest import TEST_BROKER, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(TEST_BROKER != "kafka", reason="Apache Kafka only: `make test-kafka` "
                                                                "(SALESBUS_TEST_BROKER=kafka)")]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kafka"


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def describe(admin: AdminClient, resource: ConfigResource) -> dict[str, str]:
    """The resource's configs (a topic just created may be unknown to the broker for a moment)."""
    def attempt():
        (future,) = admin.describe_configs([resource]).values()
        try:
            return {name: entry.value for name, entry in future.result(timeout=30).items()}
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None
    return wait_until(attempt, timeout=30, interval=0.2, message=f"{resource} to be described")


def test_the_broker_knows_every_broker_setting_of_deploy(stack):
    admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap})
    broker_id = str(next(iter(admin.list_topics(timeout=10).brokers)))
    known = describe(admin, ConfigResource(ResourceType.BROKER, broker_id))
    unknown = set(properties(DEPLOY / "server.properties")) - set(known)
    assert not unknown, f"not Apache Kafka broker settings: {unknown}"


def test_the_broker_takes_the_topic_settings_as_deploy_applies_them(stack):
    topics = yaml.safe_load((DEPLOY / "topics.yaml").read_text())
    admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap})
    replication = min(3, len(admin.list_topics(timeout=10).brokers))   # 1 on the ordinary Kafka tier
    name = f"DeployCheck{uuid.uuid4().hex[:8]}"
    business = {k: str(v) for k, v in topics["business"]["config"].items()}
    futures = admin.create_topics([NewTopic(name, topics["business"]["partitions"], replication, config=business),
                                   NewTopic(f"{name}.DLQ", topics["dead_letters"]["partitions"], replication)],
                                  operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    try:
        got = describe(admin, ConfigResource(ResourceType.TOPIC, name))
        assert {k: got[k] for k in business} == business
        # the dead letters' longer retention, altered after the services created the topic
        retention = str(topics["dead_letters"]["config"]["retention.ms"])
        (future,) = admin.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, f"{name}.DLQ",
            incremental_configs=[ConfigEntry("retention.ms", retention,
                                             incremental_operation=AlterConfigOpType.SET)])]).values()
        future.result(timeout=30)
        # The controller accepts the change before the broker's metadata has it: a describe at
        # once can still answer the default 7 days (seen once in CI). Wait for it, bounded.
        dlq = ConfigResource(ResourceType.TOPIC, f"{name}.DLQ")
        wait_until(lambda: describe(admin, dlq)["retention.ms"] == retention, timeout=30, interval=0.2,
                   message=f"retention.ms={retention} on {name}.DLQ")
    finally:
        for future in admin.delete_topics([name, f"{name}.DLQ"], operation_timeout=30).values():
            future.result(timeout=60)
