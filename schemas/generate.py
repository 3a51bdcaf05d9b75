"""Generates the public contract files from the models: one JSON Schema per event and the
AsyncAPI 3 document. `python -m schemas.generate` writes them; `--check` fails when stale.

Consumers are read from the services' handler tables, each receive operation naming its handler
as `x-handler: <module>:<function>` (so the function is one look from the topic); producers are
the services whose code constructs the event, plus the declared upstream systems
(schemas/catalog.py). The document cannot claim a subscription or a producer the code does not have.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import yaml

from schemas import ALL_EVENTS, dlq_topic
from schemas.catalog import ANALYST_CONSUMERS, producers
from schemas.envelope import SCHEMA_BASE, CloudEvent

HERE = Path(__file__).parent
JSON_DIR = HERE / "json"
ASYNCAPI = HERE / "asyncapi.yaml"
SERVICES = ("cart", "payments", "orders", "notifications", "crm", "scheduler")


def handler_name(handler) -> str:
    return f"{handler.__module__}:{handler.__qualname__}"


def consumers() -> dict[str, dict[str, str]]:
    """topic -> {service: "module:function" of its handler}."""
    found: dict[str, dict[str, str]] = {}
    for name in SERVICES:
        svc = importlib.import_module(f"services.{name}.service").SERVICE
        for topic, handler in svc.handlers.items():
            found.setdefault(topic, {})[name] = handler_name(handler)
    return found


def event_schemas() -> dict[str, dict]:
    out = {}
    for model in ALL_EVENTS:
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"{SCHEMA_BASE}{model.event_type()}.schema.json"
        # pydantic's draft. The schemas keep to keywords draft 7 reads the same way ($defs is found by
        # JSON pointer), so draft-7 tools such as hypothesis-jsonschema read them as published
        # (tests/unit/test_contract_fuzz.py checks the keywords and fuzzes both directions)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["description"] = (model.__doc__ or "").strip()
        out[model.event_type()] = schema
    return out


def asyncapi(schemas: dict[str, dict]) -> dict:
    subs = consumers()
    made = producers(SERVICES, {model.__name__: model.event_type() for model in ALL_EVENTS})
    channels, operations, messages = {}, {}, {}
    for model in ALL_EVENTS:
        t = model.event_type()
        key_desc = f"Kafka key: the {model.key_field} (one aggregate's events stay in order on one partition)"
        channels[t] = {
            "address": t,
            "description": (model.__doc__ or "").strip(),
            "messages": {t: {"$ref": f"#/components/messages/{t}"}},
            "x-key": model.key_field,
            "x-producers": made.get(t, []),
            "x-consumers": list(subs.get(t, {})) + ANALYST_CONSUMERS,
            "x-dead-letter-topic": dlq_topic(t),
        }
        messages[t] = {
            "name": t,
            "title": t,
            "summary": (model.__doc__ or "").strip(),
            "contentType": "application/cloudevents+json",
            "headers": {"type": "object", "properties": {
                "ce_type": {"type": "string", "const": t, "description": "event type (= topic)"},
                "ce_id": {"type": "string", "description": "CloudEvents id; consumers deduplicate on it"},
                "traceparent": {"type": "string", "description": "W3C trace context, when there is one"}}},
            "bindings": {"kafka": {"key": {"type": "string", "description": key_desc}}},
            "payload": {"allOf": [{"$ref": "#/components/schemas/CloudEvent"},
                                  {"type": "object", "properties": {"type": {"const": t},
                                                                    "data": {"$ref": f"json/{t}.schema.json"}}}]},
        }
        for producer in made.get(t, []):
            operations[f"{producer.split()[0]}-sends-{t}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{t}"},
                "summary": f"{producer} publishes {t}"}
        for consumer, handler in subs.get(t, {}).items():
            operations[f"{consumer}-receives-{t}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{t}"},
                "summary": f"{consumer} consumes {t} (consumer group '{consumer}')",
                "x-handler": handler}
    envelope = CloudEvent.model_json_schema()
    envelope["description"] = "CloudEvents 1.0, structured JSON mode"
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "salesbus events", "version": "1.0.0",
                 "description": "Every topic on the salesbus Kafka bus. Topic name = event type; the value is a "
                                "CloudEvents 1.0 structured-mode JSON envelope whose `data` follows the event's "
                                "JSON Schema. Money is a decimal string plus an ISO 4217 currency; times are "
                                "RFC 3339 UTC. Invalid records go to `<topic>.DLQ` with `__connect.errors.*` headers."},
        "defaultContentType": "application/cloudevents+json",
        "servers": {"embedded": {"host": "127.0.0.1:9092", "protocol": "kafka",
                                 "description": "the embedded Tansu broker (port chosen at start)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEvent": envelope}},
    }


def render() -> dict[Path, str]:
    schemas = event_schemas()
    files = {JSON_DIR / f"{t}.schema.json": json.dumps(s, indent=2, sort_keys=True) + "\n" for t, s in schemas.items()}
    files[ASYNCAPI] = yaml.safe_dump(asyncapi(schemas), sort_keys=False, allow_unicode=True, width=110)
    return files


def stale() -> list[str]:
    files = render()
    out = [str(p.relative_to(HERE.parent)) for p, text in files.items() if not p.exists() or p.read_text() != text]
    extra = {p for p in JSON_DIR.glob("*.json")} - set(files)
    return out + [f"{p.relative_to(HERE.parent)} (no longer generated)" for p in extra]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = stale()
        for p in problems:
            print(f"stale: {p}")
        return 1 if problems else 0
    JSON_DIR.mkdir(exist_ok=True)
    files = render()
    for p in set(JSON_DIR.glob("*.json")) - set(files):
        p.unlink()
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
