"""`salesbus tap`: follow topics for analysts, from the beginning or from now.

Reads with a group-less consumer (assigned partitions), so tapping never moves any
service's offsets and starts instantly.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition


@dataclass
class Tapped:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes | None
    timestamp_ms: int

    def event(self) -> dict | None:
        try:
            return json.loads(self.value) if self.value else None
        except ValueError:
            return None

    def as_json(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "headers": self.headers, "event": self.event() or (self.value or b"").decode(errors="replace")}


def tap(kafka_conf: dict, topics: list[str], *, from_beginning: bool = True, follow: bool = True,
        idle_exit_s: float = 2.0, keys: set[str] | None = None, types: set[str] | None = None) -> Iterator[Tapped]:
    consumer = Consumer({**kafka_conf, "group.id": "salesbus-tap", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 100})
    try:
        meta = consumer.list_topics(timeout=10)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        parts = [TopicPartition(t, p, start) for t in topics if t in meta.topics for p in meta.topics[t].partitions]
        ends = {}
        for tp in parts:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[(tp.topic, tp.partition)] = high
        consumer.assign(parts)
        idle_since = time.monotonic()
        while True:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                caught_up = all(consumer.position([TopicPartition(t, p)])[0].offset >= high
                                for (t, p), high in ends.items() if high > 0) if not follow else False
                if not follow and (caught_up or time.monotonic() - idle_since > idle_exit_s):
                    return
                continue
            idle_since = time.monotonic()
            headers = {k: (v.decode(errors="replace") if v else "") for k, v in (msg.headers() or [])}
            rec = Tapped(msg.topic(), msg.partition(), msg.offset(),
                         msg.key().decode(errors="replace") if msg.key() else None,
                         headers, msg.value(), msg.timestamp()[1])
            if keys and rec.key not in keys:
                continue
            if types and headers.get("ce_type", msg.topic()) not in types:
                continue
            yield rec
    finally:
        consumer.close()


def pretty(rec: Tapped) -> str:
    ev = rec.event() or {}
    when = ev.get("time") or datetime.fromtimestamp(rec.timestamp_ms / 1000).isoformat()
    data = ev.get("data")
    body = json.dumps(data, separators=(",", ":"))[:300] if data is not None else (rec.value or b"")[:300]
    extra = ""
    if rec.topic.endswith(".DLQ"):
        extra = f" reason={rec.headers.get('__connect.errors.exception.message', '?')!r}"
    return f"{when}  {rec.topic:<28} key={rec.key}  id={ev.get('id', '-')}{extra}\n    {body}"
