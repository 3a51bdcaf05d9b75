"""A consumed record, and turning it into an event without ever raising.

`Record` is a plain copy of a Kafka message (so the batch code is testable without Kafka and a
parked record can be rebuilt from the database). `decode` answers, for any bytes an upstream
system may publish, either a typed event or an `InvalidRecord` saying what is wrong — a nesting
bomb, a 5000-digit number, an id that is an object, a NUL or a lone surrogate all end as a
reason, never as an exception in the consumer loop.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from runtime.containment import storable
from schemas import REGISTRY
from schemas.envelope import TRACEPARENT_HEADER, InvalidRecord, parse_record

#: longest event id or source we accept: the inbox key must fit a btree index row (~2.7 kB),
#: and no legitimate id is longer (UUIDs are 36, our deterministic ids 36, upstream ids < 100)
MAX_ID = 200
MAX_SOURCE = 200
#: deepest JSON nesting an event can have (OrderPlaced is 5 deep); RecursionError starts at ~1000
MAX_DEPTH = 32
REDRIVE_GROUP_HEADER = "salesbus.redrive.group"
REDRIVE_FROM_HEADER = "salesbus.redrive.from"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @classmethod
    def from_message(cls, msg) -> "Record":
        return cls(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(msg.headers() or ()))

    @property
    def position(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return storable(v if v is not None else "", 500)
        return None

    def group_key(self) -> str:
        """Events of one key are handled in order; a record without a key orders with nothing."""
        if not self.key:
            return f"position:{self.position}"
        return storable(self.key, 500)


@dataclass
class Decoded:
    record: Record
    #: the inbox identity: CloudEvents says (source, id) is unique, id alone is not
    source: str
    event_id: str
    event: object | None = None
    envelope: object | None = None
    error: InvalidRecord | None = None
    traceparent: str | None = None
    #: set on a re-driven dead letter: only this consumer group handles it again
    redrive_group: str | None = None
    group_key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str]:
        return self.source, self.event_id


def usable_id(value: object, limit: int = MAX_ID) -> str | None:
    """An id we can key on: a non-empty printable string (no NUL, control or lone surrogate)."""
    if isinstance(value, str) and 0 < len(value) <= limit and value.isprintable():
        return value
    return None


def decode(record: Record) -> Decoded:
    """The event in `record`, or the reason it is not one. Never raises."""
    traceparent = record.header(TRACEPARENT_HEADER)
    base = dict(traceparent=traceparent, redrive_group=record.header(REDRIVE_GROUP_HEADER),
                group_key=record.group_key())
    raw = None
    try:
        raw = _load(record.value)
        event_id, source = _identity(raw)
        if event_id is None:
            raise InvalidRecord(f"id must be a string of 1 to {MAX_ID} printable characters")
        if source is None:
            raise InvalidRecord(f"source must be a string of 1 to {MAX_SOURCE} printable characters", event_id)
        ce, event = parse_record(record.value, REGISTRY, loaded=raw)
        if ce.type != record.topic:
            raise InvalidRecord(f"event type {ce.type!r} published on topic {record.topic!r}", ce.id)
        return Decoded(record, source, event_id, event, ce, **base)
    except Exception as exc:  # noqa: BLE001 - whatever the bytes do, the answer is a reason
        error = exc if isinstance(exc, InvalidRecord) else InvalidRecord(
            f"cannot decode: {type(exc).__name__}: {storable(exc, 300)}")
        event_id, source = _identity(raw) if isinstance(raw, dict) else (None, None)
        if event_id is None:
            # no usable id: deduplicated by its position (a redelivery is the same position)
            return Decoded(record, "record", record.position, error=error, **base)
        return Decoded(record, source or "", event_id, error=error, **base)


def _load(value: bytes | None):
    if value is None:
        raise InvalidRecord("empty record (tombstone) where an event was expected")
    try:
        raw = json.loads(value, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidRecord(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        # ValueError: Python refuses to convert integers of more than 4300 digits
        raise InvalidRecord(f"not JSON: {storable(exc, 300)}") from None
    # Counting brackets runs at C speed; only a record with many of them is walked.
    if value.count(b"[") + value.count(b"{") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise InvalidRecord(f"JSON nested deeper than {MAX_DEPTH} levels")
    if b"\\u" in value:  # only escapes can carry a NUL or a lone surrogate into a string
        bad = _unstorable_text(raw)
        if bad:
            raise InvalidRecord(bad)
    return raw


def _identity(raw) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict):
        return None, None
    return usable_id(raw.get("id")), usable_id(raw.get("source"), MAX_SOURCE)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number in an event")


def _depth(raw) -> int:
    deepest, stack = 0, [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def _unstorable_text(raw) -> str | None:
    stack = [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if _bad(k):
                    return f"field name {storable(k, 60)!r} contains a NUL or an invalid character"
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and _bad(node):
            return f"text {storable(node, 60)!r} contains a NUL or a lone surrogate"
    return None


def _bad(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
