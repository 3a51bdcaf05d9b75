"""A keyed record lands on the partition Apache Kafka's Java client would choose for its key.

The outbox relay (runtime/relay.py producer_conf) and the tests' upstream Bus use librdkafka's
murmur2_random partitioner. Expected partitions come from the Java client itself (JavaPartition,
compiled against the fetched kafka-clients jar) when java and Maven are here, and always from
murmur2 values published in Kafka's own tests (UtilsTest.testMurmur2). Partitioning is done by the
producer, so this holds on any broker; `make test-kafka` runs it on Apache Kafka.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from runtime.relay import producer_conf
from runtime.topics import ensure_topics
from tests import kafka_cluster

pytestmark = pytest.mark.integration
PARTITIONS = 12
#: murmur2(key) as Kafka's UtilsTest asserts it
PUBLISHED_MURMUR2 = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
                     "a-little-bit-longer-string": -1486304829,
                     "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107}


def java_partitions(keys: list[str], partitions: int) -> dict[str, tuple[int, int]]:
    """key -> (murmur2, partition) as the Java client computes them."""
    libs = kafka_cluster.kafka_libs()
    classes = kafka_cluster.CACHE / "classes"
    source = Path(__file__).with_name("JavaPartition.java")
    if not (classes / "JavaPartition.class").exists() or \
            (classes / "JavaPartition.class").stat().st_mtime < source.stat().st_mtime:
        classes.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-d", str(classes), "-cp", f"{libs}/*", str(source)], check=True,
                       capture_output=True, timeout=300)
    out = subprocess.run(["java", "-Xmx64m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*:{classes}",
                          "JavaPartition", str(partitions), *keys],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    found = {}
    for line in out.splitlines():
        key, h, p = line.rsplit("\t", 2)
        found[key] = (int(h), int(p))
    return found


def placed(conf: dict, topic: str, keys: list[str]) -> dict[str, int]:
    producer = Producer(conf)
    where: dict[str, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        where[msg.key().decode()] = msg.partition()
    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"{}", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return where


def test_a_key_lands_where_the_java_client_puts_it(cfg, unique):
    topic = f"partitioner-{unique}"
    ensure_topics(cfg.kafka_common(), PARTITIONS, cfg.topic_replication, topics=[topic])
    keys = [*PUBLISHED_MURMUR2, "ord-0001", "cust-Žutić-ß", *(str(uuid.UUID(int=i * 7919)) for i in range(40))]
    expected = {k: (h & 0x7FFFFFFF) % PARTITIONS for k, h in PUBLISHED_MURMUR2.items()}
    # The Java client's own answer in the Kafka tier (make test-kafka); make test checks the
    # published murmur2 values only (compiling and starting Java there cost 16 s of the 10 minutes).
    on_kafka = os.environ.get("SALESBUS_TEST_BROKER") == "kafka"
    if on_kafka and shutil.which("java") and shutil.which("javac") and kafka_cluster.available() is None:
        java = java_partitions(keys, PARTITIONS)
        assert {k: java[k][0] for k in PUBLISHED_MURMUR2} == PUBLISHED_MURMUR2  # the same murmur2
        expected = {k: p for k, (_h, p) in java.items()}
    relay = placed(producer_conf(cfg.kafka_common()), topic, keys)
    assert {k: relay[k] for k in expected} == expected
    # the upstream test producer agrees with the relay
    assert placed({**cfg.kafka_common(), "partitioner": "murmur2_random"}, topic, keys) == relay
    # and the setting matters: librdkafka's own default (CRC32) puts some of these keys elsewhere
    default = placed({k: v for k, v in producer_conf(cfg.kafka_common()).items() if k != "partitioner"},
                     topic, keys)
    assert any(default[k] != relay[k] for k in keys)
