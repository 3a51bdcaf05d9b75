"""`salesbus tap`: follow topics for analysts, from the beginning or from now.

Reads with a group-less consumer (assigned partitions), so tapping never moves any
service's offsets and starts instantly. Filters: by key, by event type, by event time
(``since``/``until``: the CloudEvent ``time``, i.e. when it happened in the business, which
can differ from when it was written to Kafka), and by payload fields (``Where``).

Without ``follow`` it stops at the end of every partition, as told by the broker's end-of-
partition signal while fetching: the embedded broker's ListOffsets answer can stop short of
the last batch, so the watermarks it reports are not trusted for that.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Message, TopicPartition

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """RFC 3339 (``2026-03-01T09:00:00Z``), a date (``2026-03-01``, midnight UTC), ``now``, or a
    time ago (``90s``, ``15m``, ``2h``, ``7d``, ``2w``). Always an aware UTC datetime."""
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        at = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{value!r} is neither RFC 3339 (2026-03-01T09:00:00Z) nor relative (2h, 7d)") from None
    if at.tzinfo is None:
        if len(text) > 10:  # a time without an offset is ambiguous: refuse rather than guess
            raise ValueError(f"{value!r} has no UTC offset (add Z or +02:00)")
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc)


@dataclass(frozen=True)
class Where:
    """``path=value`` (or ``path!=value``) on the event's payload; ``path`` is dotted. Through a
    list, a numeric part picks one element and a name matches when ANY element matches
    (``lines.sku=BULB-60W``). Values compare as text; JSON literals as written (true, 3, null)."""
    path: tuple[str, ...]
    value: str
    negate: bool = False

    @classmethod
    def parse(cls, expr: str) -> "Where":
        negate = "!=" in expr
        field, sep, value = expr.partition("!=" if negate else "=")
        if not sep or not field.strip():
            raise ValueError(f"--where takes field=value or field!=value, got {expr!r}")
        return cls(tuple(field.strip().split(".")), value, negate)

    def matches(self, payload: Any) -> bool:
        found = any(_text(v) == self.value for v in _resolve(payload, self.path))
        return found != self.negate


def _resolve(node: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield node
        return
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        if head in node:
            yield from _resolve(node[head], rest)
    elif isinstance(node, list):
        if head.isdigit():
            if int(head) < len(node):
                yield from _resolve(node[int(head)], rest)
        else:
            for item in node:
                yield from _resolve(item, path)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


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
            ev = json.loads(self.value) if self.value else None
        except (ValueError, RecursionError):  # garbage an upstream published: a nesting bomb, 5000 digits
            return None
        return ev if isinstance(ev, dict) else None

    def time(self) -> datetime:
        """The event's own time (CloudEvent ``time``); the Kafka timestamp when it has none."""
        raw = (self.event() or {}).get("time")
        if isinstance(raw, str):
            try:
                at = datetime.fromisoformat(raw)
                if at.tzinfo is not None:
                    return at.astimezone(timezone.utc)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc)

    def as_json(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "headers": self.headers, "event": self.event() or (self.value or b"").decode(errors="replace")}


END_SETTLE_S = 0.5
#: how long a read without ``follow`` waits for every partition's first answer (a record or its
#: end) before ``idle_exit_s`` applies: a new consumer's first fetch can take over a second on a
#: busy machine (seen on Apache Kafka under the full test suite), and stopping then loses records
START_WAIT_S = 10.0


def read(kafka_conf: dict, topics: list[str], *, from_beginning: bool = True, follow: bool = True,
         idle_exit_s: float = 2.0, start_at: dict[tuple[str, int], int] | None = None) -> Iterator[Message]:
    """Raw messages of ``topics`` (every partition), read with assigned partitions and no
    commits, so no group's offsets move. ``start_at`` reads only those (topic, partition)s,
    from those offsets. Without ``follow``: stops when every partition has been read to its
    end (or after ``idle_exit_s`` without anything from the broker)."""
    consumer = Consumer({**kafka_conf, "group.id": "salesbus-tap", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 100, "enable.partition.eof": True})
    try:
        if start_at is not None:
            parts = [TopicPartition(t, p, offset) for (t, p), offset in start_at.items()]
        else:
            meta = consumer.list_topics(timeout=10)
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            parts = [TopicPartition(t, p, start) for t in topics if t in meta.topics
                     for p in meta.topics[t].partitions]
        at_end: set[tuple[str, int]] = set()
        heard: set[tuple[str, int]] = set()  # partitions that answered (a record or their end)
        consumer.assign(parts)
        idle_since = last_record = time.monotonic()
        while True:
            # Tansu can report a partition's end before the last records of a batch, so "every
            # partition at its end" only counts once nothing more has arrived for a moment.
            if not follow and len(at_end) == len(parts) and time.monotonic() - last_record >= END_SETTLE_S:
                return
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if msg is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                    heard.add((msg.topic(), msg.partition()))
                    idle_since = time.monotonic()
                elif not follow and time.monotonic() - idle_since > (
                        idle_exit_s if len(heard) == len(parts) else max(idle_exit_s, START_WAIT_S)):
                    return
                continue
            idle_since = last_record = time.monotonic()
            heard.add((msg.topic(), msg.partition()))
            at_end.discard((msg.topic(), msg.partition()))
            yield msg
    finally:
        consumer.close()


def tapped(msg: Message) -> Tapped:
    headers = {k: (v.decode(errors="replace") if v else "") for k, v in (msg.headers() or [])}
    return Tapped(msg.topic(), msg.partition(), msg.offset(),
                  msg.key().decode(errors="replace") if msg.key() else None,
                  headers, msg.value(), msg.timestamp()[1])


def tap(kafka_conf: dict, topics: list[str], *, from_beginning: bool = True, follow: bool = True,
        idle_exit_s: float = 2.0, keys: set[str] | None = None, types: set[str] | None = None,
        since: datetime | None = None, until: datetime | None = None,
        where: Iterable[Where] = ()) -> Iterator[Tapped]:
    """Records of ``topics`` passing every filter (``since`` inclusive, ``until`` exclusive).
    Without ``follow``: stops when every partition has been read to its end (or after
    ``idle_exit_s`` without anything from the broker)."""
    where = list(where)
    with closing(read(kafka_conf, topics, from_beginning=from_beginning, follow=follow,
                      idle_exit_s=idle_exit_s)) as messages:
        for msg in messages:
            rec = tapped(msg)
            if keys and rec.key not in keys:
                continue
            if types and rec.headers.get("ce_type", msg.topic()) not in types:
                continue
            if (since or until) and not ((since is None or rec.time() >= since) and (until is None or rec.time() < until)):
                continue
            if where and not all(w.matches((rec.event() or {}).get("data")) for w in where):
                continue
            yield rec


def summarize(records: Iterable[Tapped]) -> dict[str, Any]:
    """Counts per event type and per (type, key), with the time span each type covers."""
    per_type: Counter = Counter()
    per_key: Counter = Counter()
    span: dict[str, list[datetime]] = {}
    for rec in records:
        etype = rec.headers.get("ce_type") or (rec.event() or {}).get("type") or rec.topic
        per_type[etype] += 1
        per_key[(etype, rec.key)] += 1
        at = rec.time()
        first_last = span.setdefault(etype, [at, at])
        first_last[0], first_last[1] = min(first_last[0], at), max(first_last[1], at)
    return {"types": {t: {"records": n, "keys": sum(1 for (tt, _k) in per_key if tt == t),
                          "first": span[t][0].isoformat(), "last": span[t][1].isoformat()}
                      for t, n in sorted(per_type.items())},
            "keys": [{"type": t, "key": k, "records": n} for (t, k), n in per_key.most_common()]}


def pretty(rec: Tapped) -> str:
    ev = rec.event() or {}
    when = ev.get("time") or datetime.fromtimestamp(rec.timestamp_ms / 1000).isoformat()
    data = ev.get("data")
    body = json.dumps(data, separators=(",", ":"))[:300] if data is not None else (rec.value or b"")[:300]
    extra = ""
    if rec.topic.endswith(".DLQ"):
        extra = f" reason={rec.headers.get('__connect.errors.exception.message', '?')!r}"
    return f"{when}  {rec.topic:<28} key={rec.key}  id={ev.get('id', '-')}{extra}\n    {body}"


def summary_tables(found: dict, top: int = 20) -> list:
    """``summarize``'s answer as rich tables: per type, and the busiest keys."""
    from rich.table import Table

    types = Table("type", "records", "keys", "first", "last", title="records per type")
    for etype, t in found["types"].items():
        types.add_row(etype, str(t["records"]), str(t["keys"]), t["first"], t["last"])
    keys = Table("type", "key", "records", title=f"records per key (top {top})")
    for row in found["keys"][:top]:
        keys.add_row(row["type"], str(row["key"]), str(row["records"]))
    return [types, keys]
