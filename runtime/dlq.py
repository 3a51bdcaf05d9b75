"""`salesbus dlq`: list what consumers set aside on `<topic>.DLQ`, show one dead letter, and
re-drive one to one consumer group.

A dead letter is the original record, untouched, with Kafka Connect `__connect.errors.*`
headers saying where it came from and why (see `runtime.dead_letters`). Reading goes through
`runtime.tap.read`: assigned partitions, nothing committed, stopping at the end of every
partition (with tap's settle time, since Tansu may report the end before a batch's last
records).

Re-drive convention (what `runtime.batch` honours): the record's key and value go back to the
original topic with the original headers (every header not starting with `__connect.errors.`
and not `salesbus.event.id`) plus `salesbus.redrive.group` (the one consumer group that is to
handle it again; every other group skips it) and `salesbus.redrive.from`
(`<dlq topic>/<partition>/<offset>`). The named group handles it once more even though its
inbox holds the original as dead-lettered; if it fails again, it is dead-lettered again.
"""
from __future__ import annotations

import json
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from runtime.record import REDRIVE_FROM_HEADER, REDRIVE_GROUP_HEADER
from runtime.tap import read

CONNECT_PREFIX = "__connect.errors."
EVENT_ID_HEADER = "salesbus.event.id"
TRUNCATED_HEADER = "salesbus.dlq.truncated"
#: what `show` prints at most: a few KB whatever the record carries
SHOW_HEADER_VALUE = 500
SHOW_HEADERS_BUDGET = 3000
SHOW_VALUE_BUDGET = 3000
SHOW_KEY = 200
LIST_REASON = 300


class DlqError(Exception):
    """Something the operator asked for that cannot be done (no such topic, record, header)."""


def dlq_name(topic: str) -> str:
    """`OrderPlaced` and `OrderPlaced.DLQ` both name `OrderPlaced.DLQ`."""
    return topic if topic.endswith(".DLQ") else f"{topic}.DLQ"


def parse_position(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` (or just `OFFSET`, partition 0: DLQ topics have one partition)."""
    part, sep, off = text.strip().rpartition(":")
    try:
        partition, offset = (int(part) if sep else 0), int(off)
    except ValueError:
        raise DlqError(f"{text!r} is not PARTITION:OFFSET (e.g. 0:12)") from None
    if partition < 0 or offset < 0:
        raise DlqError(f"{text!r}: partition and offset are never negative")
    return partition, offset


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int

    @classmethod
    def from_message(cls, msg) -> "DeadLetter":
        return cls(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                   list(msg.headers() or []), msg.timestamp()[1])

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return _text(v)
        return None

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def group(self) -> str | None:
        return self.header(CONNECT_PREFIX + "consumer.group")

    @property
    def exception(self) -> str | None:
        return self.header(CONNECT_PREFIX + "exception.class.name")

    @property
    def reason(self) -> str | None:
        return self.header(CONNECT_PREFIX + "exception.message")

    @property
    def event_id(self) -> str | None:
        return self.header(EVENT_ID_HEADER)

    @property
    def original(self) -> tuple[str | None, int | None, int | None]:
        return (self.header(CONNECT_PREFIX + "topic"), _int(self.header(CONNECT_PREFIX + "partition")),
                _int(self.header(CONNECT_PREFIX + "offset")))

    @property
    def at(self) -> datetime:
        """When it was dead-lettered (the DLQ record's Kafka timestamp)."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc)

    def as_row(self) -> dict[str, Any]:
        topic, partition, offset = self.original
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "group": self.group, "event_id": self.event_id, "exception": self.exception,
                "reason": self.reason, "key": _bounded(_text(self.key), SHOW_KEY) if self.key else None,
                "original": {"topic": topic, "partition": partition, "offset": offset},
                "at": self.at.isoformat(), "truncated": self.header(TRUNCATED_HEADER)}


# -- reading ---------------------------------------------------------------------------------

def dlq_topics(kafka_conf: dict) -> list[str]:
    """Every `*.DLQ` topic on the broker."""
    meta = AdminClient(kafka_conf).list_topics(timeout=10)
    return sorted(t for t in meta.topics if t.endswith(".DLQ"))


def list_dead_letters(kafka_conf: dict, topics: Iterable[str] | None = None, *, group: str | None = None,
                      since: datetime | None = None, idle_exit_s: float = 2.0) -> dict[str, list[DeadLetter]]:
    """Dead letters per DLQ topic (default: every `*.DLQ` topic), read to the end, oldest first.
    ``group``: only those this consumer group set aside; ``since``: dead-lettered at or after."""
    on_broker = set(dlq_topics(kafka_conf))
    names = [dlq_name(t) for t in topics] if topics else sorted(on_broker)
    missing = [t for t in names if t not in on_broker]
    if missing:
        raise DlqError(f"no such topic on the broker: {', '.join(missing)}")
    found: dict[str, list[DeadLetter]] = {t: [] for t in names}
    if not names:
        return found
    with closing(read(kafka_conf, names, follow=False, idle_exit_s=idle_exit_s)) as messages:
        for msg in messages:
            dl = DeadLetter.from_message(msg)
            if group is not None and dl.group != group:
                continue
            if since is not None and dl.at < since:
                continue
            found[dl.topic].append(dl)
    for records in found.values():
        records.sort(key=lambda d: (d.partition, d.offset))
    return found


def read_dead_letter(kafka_conf: dict, topic: str, partition: int, offset: int,
                     idle_exit_s: float = 3.0) -> DeadLetter:
    """The one record at ``topic`` ``partition``:``offset`` (DlqError if there is none)."""
    topic = dlq_name(topic)
    meta = AdminClient(kafka_conf).list_topics(timeout=10)
    if topic not in meta.topics:
        raise DlqError(f"no such topic on the broker: {topic}")
    if partition not in meta.topics[topic].partitions:
        raise DlqError(f"{topic} has no partition {partition} (it has {len(meta.topics[topic].partitions)})")
    with closing(read(kafka_conf, [topic], follow=False, idle_exit_s=idle_exit_s,
                      start_at={(topic, partition): offset})) as messages:
        for msg in messages:
            if msg.offset() == offset:
                return DeadLetter.from_message(msg)
            if msg.offset() > offset:
                break
    raise DlqError(f"no record at {topic} {partition}:{offset}")


# -- re-drive --------------------------------------------------------------------------------

@dataclass
class Redriven:
    topic: str
    partition: int
    offset: int
    group: str
    source: str
    headers: list[tuple[str, bytes]]

    def as_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "group": self.group,
                "from": self.source, "headers": {k: _text(v) for k, v in self.headers}}


def redrive_headers(dl: DeadLetter, group: str) -> list[tuple[str, bytes]]:
    """The original record's headers, plus the two that make it a re-drive for ``group``."""
    kept = [(k, v if v is not None else b"") for k, v in dl.headers
            if not k.startswith(CONNECT_PREFIX) and k not in (EVENT_ID_HEADER, REDRIVE_GROUP_HEADER,
                                                              REDRIVE_FROM_HEADER)]
    return kept + [(REDRIVE_GROUP_HEADER, group.encode()), (REDRIVE_FROM_HEADER, dl.position.encode())]


def redrive(kafka_conf: dict, topic: str, partition: int, offset: int, group: str | None = None) -> Redriven:
    """Publish the dead letter at ``topic`` ``partition``:``offset`` to its original topic for one
    consumer group (default: the group that dead-lettered it). Returns where it landed."""
    dl = read_dead_letter(kafka_conf, topic, partition, offset)
    original = dl.header(CONNECT_PREFIX + "topic")
    if not original:
        raise DlqError(f"{dl.position} is not a dead letter: it has no {CONNECT_PREFIX}topic header")
    if dl.header(TRUNCATED_HEADER) is not None:
        raise DlqError(f"{dl.position} is a truncated copy ({dl.header(TRUNCATED_HEADER)}); the full record is "
                       f"in {dl.header('salesbus.dlq.full') or 'the outbox of the service that set it aside'}")
    group = group or dl.group
    if not group:
        raise DlqError(f"{dl.position} names no consumer group ({CONNECT_PREFIX}consumer.group): pass --group")
    headers = redrive_headers(dl, group)
    producer = Producer({**kafka_conf,
                         "enable.idempotence": True,      # a retry does not re-drive it twice
                         "acks": "all",                   # reported re-driven only once the replicas have it
                         "partitioner": "murmur2_random"})  # its key's partition, as the relay puts it there
    delivered: dict[str, Any] = {}

    def on_delivery(err, msg):
        delivered["err"], delivered["msg"] = err, msg
    # The dead-letter writer stores an absent key as ""; it goes back as no key.
    producer.produce(original, key=dl.key or None, value=dl.value, headers=headers, on_delivery=on_delivery)
    if producer.flush(30) or "err" not in delivered:
        raise DlqError(f"the broker did not acknowledge the re-drive of {dl.position} to {original} within 30s")
    if delivered["err"] is not None:
        raise DlqError(f"the broker refused the re-drive of {dl.position} to {original}: {delivered['err'].str()}")
    msg = delivered["msg"]
    return Redriven(msg.topic(), msg.partition(), msg.offset(), group, dl.position, headers)


# -- rendering -------------------------------------------------------------------------------

def summary(records: list[DeadLetter]) -> list[dict[str, Any]]:
    """Records per (consumer group, exception class), most first."""
    counts = Counter((d.group or "?", d.exception or "?") for d in records)
    return [{"group": g, "exception": e, "records": n}
            for (g, e), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def listing_json(found: dict[str, list[DeadLetter]]) -> dict[str, Any]:
    return {"topics": [{"topic": t, "records": len(recs), "summary": summary(recs),
                        "dead_letters": [d.as_row() for d in recs]} for t, recs in found.items()]}


def listing_text(found: dict[str, list[DeadLetter]], *, skip_empty: bool = False) -> str:
    lines: list[str] = []
    empty = 0
    for topic, records in found.items():
        if not records and skip_empty:
            empty += 1
            continue
        lines.append(f"{topic}: {len(records)} dead letter(s)")
        for row in summary(records):
            lines.append(f"  {row['records']:>6}  group={row['group']}  {row['exception']}")
        for d in records:
            o_topic, o_part, o_off = d.original
            lines.append(f"  {d.partition}:{d.offset}  {d.at.isoformat(timespec='seconds')}  group={d.group or '?'}"
                         f"  id={d.event_id or '-'}  key={_bounded(_text(d.key), 80) if d.key else '-'}"
                         f"  from {o_topic or '?'}/{o_part if o_part is not None else '?'}"
                         f"/{o_off if o_off is not None else '?'}")
            lines.append(f"        {d.exception or '?'}: {_bounded(d.reason or '', LIST_REASON)}"
                         + (f"  [truncated copy: {d.header(TRUNCATED_HEADER)}]" if d.header(TRUNCATED_HEADER) else ""))
        lines.append("")
    if skip_empty:
        lines.append(f"{len(found)} DLQ topic(s) read, {empty} empty")
    return "\n".join(lines).rstrip("\n")


def _value_text(value: bytes | None) -> tuple[str, str]:
    """(kind, text) for the value: pretty JSON when it is JSON, else a bounded repr."""
    if not value:
        return "empty", ""
    try:
        parsed = json.loads(value)
        pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        shown = value[:SHOW_VALUE_BUDGET // 4]
        more = f"… ({len(value) - len(shown)} more bytes)" if len(shown) < len(value) else ""
        return f"not JSON, {len(value)} bytes", _bounded(repr(shown), SHOW_VALUE_BUDGET) + more
    return f"JSON, {len(value)} bytes", _bounded(pretty, SHOW_VALUE_BUDGET)


def show_json(dl: DeadLetter) -> dict[str, Any]:
    kind, text = _value_text(dl.value)
    return {**dl.as_row(), "headers": [[k, _bounded(_text(v), SHOW_HEADER_VALUE)] for k, v in dl.headers[:64]],
            "value_kind": kind, "value": text}


def show_text(dl: DeadLetter) -> str:
    o_topic, o_part, o_off = dl.original
    lines = [f"{dl.topic} {dl.partition}:{dl.offset}  dead-lettered {dl.at.isoformat(timespec='seconds')}"
             f" by group {dl.group or '?'}",
             f"from {o_topic or '?'}/{o_part if o_part is not None else '?'}/{o_off if o_off is not None else '?'}"
             f"  event id {dl.event_id or '-'}",
             f"reason: {dl.exception or '?'}: {_bounded(dl.reason or '', SHOW_HEADER_VALUE * 2)}",
             f"headers ({len(dl.headers)}):"]
    budget = SHOW_HEADERS_BUDGET
    for i, (k, v) in enumerate(dl.headers):
        line = f"  {_bounded(k, 100)}: {_bounded(_text(v), SHOW_HEADER_VALUE)}"
        if len(line) > budget:
            lines.append(f"  … {len(dl.headers) - i} more header(s) not shown")
            break
        budget -= len(line)
        lines.append(line)
    lines.append(f"key: {_bounded(repr(dl.key), SHOW_KEY) if dl.key is not None else '(none)'}")
    kind, text = _value_text(dl.value)
    lines.append(f"value ({kind}):")
    if text:
        lines.append(text)
    return "\n".join(lines)


def redriven_text(r: Redriven) -> str:
    return (f"re-drove {r.source} to {r.topic} partition {r.partition} offset {r.offset} for consumer group "
            f"{r.group} (other groups skip it)")
