"""Dead-letter records: the original record, untouched, on <topic>.DLQ with headers saying why.

Header names follow Kafka Connect's `__connect.errors.*` convention so existing tooling reads
them. The row goes through the outbox in the batch's transaction, so a dead-letter and the
inbox entry that marks the record done commit together. Every header and the key are made
storable first (jsonb and text refuse NUL, UTF-8 refuses lone surrogates): a dead letter can
always be written, whatever the record carried.
"""
from __future__ import annotations

from runtime.containment import MAX_REASON, storable
from runtime.outbox import OutboxRow
from runtime.record import REDRIVE_FROM_HEADER, REDRIVE_GROUP_HEADER, Record
from schemas import dlq_topic

MAX_HEADERS = 64          # an upstream record with more headers keeps its first 64 on the DLQ
MAX_HEADER_VALUE = 4096


def dead_letter_row(record: Record, reason: Exception | str, service: str, inbox_id: str,
                    attempt: int = 1) -> OutboxRow:
    original_headers: dict[str, str] = {}
    for k, v in record.headers[:MAX_HEADERS]:
        if k in (REDRIVE_GROUP_HEADER, REDRIVE_FROM_HEADER):
            continue  # a re-driven record that fails again is a new dead letter, not a re-drive
        original_headers[storable(k, 200)] = storable(v if v is not None else "", MAX_HEADER_VALUE)
    cls = getattr(reason, "cls", None) or (type(reason).__name__ if isinstance(reason, Exception) else "Rejected")
    headers = {
        **original_headers,
        "__connect.errors.topic": record.topic,
        "__connect.errors.partition": str(record.partition),
        "__connect.errors.offset": str(record.offset),
        "__connect.errors.exception.class.name": cls,
        "__connect.errors.exception.message": storable(reason, MAX_REASON),
        "__connect.errors.consumer.group": service,
        "salesbus.event.id": storable(getattr(reason, "event_id", None) or inbox_id, 300),
    }
    key = storable(record.key, 500) if record.key else ""
    # The DLQ row's own id: one per (record, consuming service, attempt), so a retried batch writes
    # it once and a re-driven record that fails again is a second dead letter.
    row_id = f"dlq:{service}:{storable(inbox_id, 500)}" + (f":{attempt}" if attempt > 1 else "")
    return OutboxRow(row_id, dlq_topic(record.topic), key, record.value or b"", headers)
