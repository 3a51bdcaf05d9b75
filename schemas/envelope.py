"""CloudEvents 1.0 envelope (structured JSON mode) and the Kafka record mapping.

Every record on the bus is one CloudEvent whose `data` is one of the event models in
`schemas.events`. The Kafka key is the event's aggregate id so one aggregate's events
stay in order on one partition; headers repeat the type (so routers need not parse the
body) and carry a W3C traceparent when there is one.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SPEC_VERSION = "1.0"
SCHEMA_BASE = "https://salesbus.example/schemas/"
TYPE_HEADER = "ce_type"
ID_HEADER = "ce_id"
TRACEPARENT_HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class Event(BaseModel):
    """Base of every event payload. Subclasses name their aggregate key field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: the payload field that is the aggregate id, used as the Kafka key
    key_field: ClassVar[str]

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CloudEvent(BaseModel):
    """The envelope as it travels: structured-mode CloudEvents JSON."""

    model_config = ConfigDict(extra="allow")  # CloudEvents allows extension attributes

    specversion: str = SPEC_VERSION
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]

    @field_validator("specversion")
    @classmethod
    def _v1(cls, v: str) -> str:
        if v != SPEC_VERSION:
            raise ValueError(f"unsupported CloudEvents specversion {v!r}")
        return v

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time must carry a UTC offset (RFC 3339)")
        return v.astimezone(timezone.utc)


class InvalidRecord(Exception):
    """A record that cannot become an event: bad JSON, bad envelope or bad payload."""

    def __init__(self, message: str, event_id: str | None = None):
        super().__init__(message)
        self.event_id = event_id


def new_event_id() -> str:
    return str(uuid.uuid4())


def deterministic_id(*parts: object) -> str:
    """An event or aggregate id derived from its cause, so a replay yields the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "salesbus:" + ":".join(map(str, parts))))


def envelope(event: Event, *, source: str, event_id: str | None = None,
             time: datetime | None = None) -> CloudEvent:
    etype = event.event_type()
    return CloudEvent(
        id=event_id or new_event_id(),
        source=source,
        type=etype,
        time=time or utcnow(),
        subject=event.key,
        dataschema=f"{SCHEMA_BASE}{etype}.schema.json",
        data=event.model_dump(mode="json"),
    )


def to_record(ce: CloudEvent, traceparent: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    """(key, value, headers) for Kafka. Topic name = event type."""
    headers = {TYPE_HEADER: ce.type, ID_HEADER: ce.id}
    if traceparent:
        headers[TRACEPARENT_HEADER] = traceparent
    value = ce.model_dump_json(exclude_none=True).encode()
    return ce.subject or ce.id, value, headers


def parse_record(value: bytes | None, registry: dict[str, type[Event]], *,
                 loaded: Any = None) -> tuple[CloudEvent, Event]:
    """Envelope and typed payload, or InvalidRecord saying exactly what is wrong.

    `loaded`: the value already parsed as JSON (the consumer parses it once, with its guards)."""
    if value is None:
        raise InvalidRecord("empty record (tombstone) where an event was expected")
    if loaded is not None:
        raw = loaded
    else:
        try:
            raw = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise InvalidRecord(f"not JSON: {type(exc).__name__}") from exc
    event_id = raw.get("id") if isinstance(raw, dict) else None
    try:
        ce = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRecord(f"not a CloudEvent: {_brief(exc)}", event_id) from exc
    model = registry.get(ce.type)
    if model is None:
        raise InvalidRecord(f"unknown event type {ce.type!r}", ce.id)
    try:
        return ce, model.model_validate(ce.data)
    except ValidationError as exc:
        raise InvalidRecord(f"invalid {ce.type}: {_brief(exc)}", ce.id) from exc


def valid_traceparent(value: str | None) -> str | None:
    return value if value and _TRACEPARENT.match(value) else None


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
