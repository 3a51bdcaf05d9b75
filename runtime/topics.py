"""Topic administration: one topic per event type, plus its dead-letter topic."""
from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import TOPICS, dlq_topic

log = logging.getLogger(__name__)


def all_topics() -> list[str]:
    return [t for topic in TOPICS for t in (topic, dlq_topic(topic))]


def ensure_topics(kafka_conf: dict, partitions: int = 3, replication: int = 1,
                  topics: list[str] | None = None) -> list[str]:
    """Create missing topics; returns the ones created. Safe to run from many processes."""
    admin = AdminClient(kafka_conf)
    wanted = topics or all_topics()
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, 1 if t.endswith(".DLQ") else partitions, replication) for t in missing],
        operation_timeout=10)
    created = []
    for topic, fut in futures.items():
        try:
            fut.result()
            created.append(topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def list_topics(kafka_conf: dict) -> dict[str, int]:
    meta = AdminClient(kafka_conf).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in sorted(meta.topics.items()) if not name.startswith("__")}
