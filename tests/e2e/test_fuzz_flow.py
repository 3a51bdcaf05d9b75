"""Whatever an upstream system publishes, the rest keeps flowing (issue 9, "done means").

Generated bad records of every class the black-box run found — nesting bombs, 5000-digit
numbers, ids that are objects, integers, too long, with a NUL or a lone surrogate, NaN, NUL
in a field name, in the Kafka key or in a header, non-UTF-8 bytes, tombstones, events on the
wrong topic, schema-shaped events with an address the email package misreads or an amount
no column holds — are published on every consumed topic, mixed with good card orders, into
the running services. Then: every bad record is in `<topic>.DLQ` once per consumer group of
that topic, with a storable reason; every good order is confirmed once and emailed once; no
service loop crashed. It prints the counts.

`make test` runs a short version; `make fuzz` runs 10 000 bad records
(SALESBUS_FUZZ_BAD_RECORDS, SALESBUS_FUZZ_GOOD_ORDERS).
"""
from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, Producer

from runtime.embedded import read_mail
from schemas import OrderPlaced, envelope, to_record
from tests.conftest import wait_until
from tests.e2e.conftest import delivery, running_shop

pytestmark = pytest.mark.integration
SERVICES = ("cart", "payments", "orders", "notifications", "crm", "scheduler")
BAD = int(os.environ.get("SALESBUS_FUZZ_BAD_RECORDS", "600"))
GOOD = int(os.environ.get("SALESBUS_FUZZ_GOOD_ORDERS", "30"))


def good_order(order_id: str, email: str) -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": "fuzz-customer", "channel": "edi",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 10,
                   "unit_price": {"amount": "1.85", "currency": "EUR"}}],
        "total": {"amount": "18.50", "currency": "EUR"}, "delivery": delivery(email),
        "payment": {"mode": "card", "card_token": "tok_visa_approved"}, "placed_at": datetime.now(timezone.utc)})


def bad_records(topic: str, i: int, tag: str, template: dict) -> dict[str, tuple[bytes | None, bytes, dict]]:
    """Every class of bad record for `topic`: class -> (value, key, headers)."""
    key = f"{tag}-{i}".encode()
    ev = {**template, "type": topic, "id": f"{tag}-{i}"}
    data = template["data"]
    j = lambda d: json.dumps(d).encode()  # noqa: E731
    classes = {
        "bomb": (b"[" * 3000, key, {}),
        "digits": (b'{"specversion": "1.0", "id": "d", "n": ' + b"9" * 5000 + b"}", key, {}),
        "id-object": (j({**ev, "id": {"id": i}}), key, {}),
        "id-int": (j({**ev, "id": i}), key, {}),
        "id-nul": (j({**ev, "id": f"{tag}-{i}\u0000"}), key, {}),
        "id-surrogate": (j({**ev, "id": f"{tag}-{i}\ud800"}), key, {}),
        "id-8000": (j({**ev, "id": "x" * 8000}), key, {}),
        "nan": (j({**ev, "data": {**data, "quantity": float("nan")}}), key, {}),
        "field-nul": (j({**ev, "data": {**data, "x\u0000": 1}}), key, {}),
        "key-nul": (j({**ev, "data": {}}), key + b"\x00", {}),
        "header-nul": (j({**ev, "data": {}}), key, {"h": b"a\x00b", "bytes": b"\xff\xfe"}),
        "not-utf8": (b"\xff\xfe\xfd", key, {}),
        "tombstone": (None, key, {}),
        "wrong-topic": (j({**ev, "type": "TimerFired" if topic != "TimerFired" else "OrderPlaced"}), key, {}),
        "bad-email": (j({**ev, "data": {**data, "delivery": {**data["delivery"], "email": "x:y@example.com"}}}), key, {}),
        "huge-amount": (j({**ev, "data": {**data, "total": {"amount": "1E+5000", "currency": "EUR"}}}), key, {}),
        "empty-data": (j({**ev, "data": {}}), key, {}),
    }
    return classes


def consumers_of(harness) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in SERVICES:
        for topic in harness.procs[name].service.handlers:
            groups.setdefault(topic, []).append(name)
    return groups


def test_thousands_of_bad_records_are_set_aside_and_every_good_order_flows_once(harness, stack, cfg, unique):
    shop = running_shop(harness, *SERVICES)
    groups = consumers_of(shop)
    topics = sorted(groups)
    tag = f"fz-{unique}"
    template = json.loads(envelope(good_order("template", "t@example.com"), source="fuzz").model_dump_json())
    rng = random.Random(unique)
    producer = Producer({**cfg.kafka_common(), "enable.idempotence": True, "acks": "all",
                         "partitioner": "murmur2_random", "linger.ms": 5})
    expected: dict[tuple[str, str], str] = {}      # (group, record key) -> class
    published = Counter()
    good = [(f"{tag}-good-{n}", f"fz-{unique}-{n}@example.com") for n in range(GOOD)]
    good_at = set(rng.sample(range(BAD + GOOD), GOOD))
    g = iter(good)
    i = 0
    for slot in range(BAD + GOOD):
        if slot in good_at:
            order_id, email = next(g)
            key, value, headers = to_record(envelope(good_order(order_id, email), source="fuzz"))
            producer.produce("OrderPlaced", key=key, value=value, headers=headers)
            continue
        topic = topics[i % len(topics)]
        cls, (value, key, headers) = rng.choice(list(bad_records(topic, i, tag, template).items()))
        producer.produce(topic, key=key, value=value, headers=headers)
        for group in groups[topic]:
            expected[(group, f"{tag}-{i}")] = cls
        published[cls] += 1
        i += 1
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0

    seen: dict[tuple[str, str], str] = {}
    consumer = Consumer({**cfg.kafka_common(), "group.id": f"fuzz-reader-{unique}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([f"{t}.DLQ" for t in topics])
    started = time.monotonic()
    try:
        deadline = started + max(120, BAD / 20)
        while time.monotonic() < deadline and not expected.keys() <= seen.keys():
            for m in consumer.consume(500, 1.0):
                if m.error() or not m.key() or not m.key().startswith(tag.encode()):
                    continue
                headers = {k: (v or b"").decode() for k, v in m.headers() or []}
                record_key = m.key().decode().split("\\0")[0]   # a NUL in the key is stored as \0
                reason = headers.get("__connect.errors.exception.message", "")
                assert reason and "\x00" not in reason
                seen[(headers.get("__connect.errors.consumer.group", "?"), record_key)] = reason
    finally:
        consumer.close()
    missing = [k for k in expected if k not in seen]
    assert not missing, f"{len(missing)} bad records not dead-lettered, e.g. {missing[:5]}"

    emails = {}
    def confirmed_and_emailed():
        emails.clear()
        for m in read_mail(stack.mail.maildir):
            if m["To"] and m["To"].startswith(f"fz-{unique}-"):
                emails.setdefault(m["To"], []).append(m["X-Salesbus-Kind"])
        return all("order_confirmation" in emails.get(addr, []) for _, addr in good)
    wait_until(confirmed_and_emailed, timeout=180, message="every good order confirmed and emailed")
    time.sleep(2)
    confirmed_and_emailed()
    doubled = {a: k for a, k in emails.items() if k.count("order_confirmation") != 1}
    assert not doubled, f"emails doubled: {list(doubled.items())[:5]}"
    for name in SERVICES:
        proc = shop.procs[name]
        assert not proc.crashed and proc.alive(), f"{name}: a loop stopped"

    by_group = Counter(group for group, _ in seen if (group, _) in expected)
    print(f"\nfuzz: {BAD} bad records on {len(topics)} topics, {GOOD} good orders, "
          f"dead letters read back in {time.monotonic() - started:.0f}s")
    print("  bad records by class: " + ", ".join(f"{c} {n}" for c, n in sorted(published.items())))
    print("  dead letters by consumer group: " + ", ".join(f"{g} {n}" for g, n in sorted(by_group.items())))
    print(f"  good orders confirmed and emailed once: {len(good)}/{len(good)}; service loops crashed: 0")
