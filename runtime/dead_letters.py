"""Dead-letter records: the original record, untouched, on <topic>.DLQ with headers saying why.

Header names follow Kafka Connect's `__connect.errors.*` convention so existing tooling reads
them. The row goes through the outbox in the batch's transaction, so a dead-letter and the
inbox entry that marks the record done commit together.
"""
from __future__ import annotations

from confluent_kafka import Message

from runtime.outbox import OutboxRow
from schemas import dlq_topic

MAX_MESSAGE = 1000


def dead_letter_row(msg: Message, reason: Exception, service: str, inbox_id: str) -> OutboxRow:
    original_headers = {
        k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
        for k, v in (msg.headers() or [])
    }
    headers = {
        **original_headers,
        "__connect.errors.topic": msg.topic(),
        "__connect.errors.partition": str(msg.partition()),
        "__connect.errors.offset": str(msg.offset()),
        "__connect.errors.exception.class.name": type(reason).__name__,
        "__connect.errors.exception.message": str(reason)[:MAX_MESSAGE],
        "__connect.errors.consumer.group": service,
        "salesbus.event.id": getattr(reason, "event_id", None) or inbox_id,
    }
    key = msg.key().decode(errors="replace") if msg.key() else ""
    # The DLQ row's own id: one per (record, consuming service), so a retried batch writes it once.
    return OutboxRow(f"dlq:{service}:{inbox_id}", dlq_topic(msg.topic()), key, msg.value() or b"", headers)
