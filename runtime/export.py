"""`salesbus export`: events as flat, typed tables for analysts (JSON lines, CSV or Parquet).

One table per event type: the envelope (event_id, event_time, event_source, event_key = the
Kafka key) and the payload's fields as columns, nested objects flattened with dots
(``total.amount``), lists and free-form objects as JSON text. A list of objects (an order's
``lines``) also gets its own child table, one row per element (``event_id``, ``event_key``,
``index`` and the element's columns), so quantities and prices per SKU are typed columns too. Column types come from the event models, so a column
exists (empty) even when no exported event had a value.

Types: money and other decimals are exact (Parquet decimal128(18, s), s = 2, or more when an
amount has more places; pandas gives decimal.Decimal objects); times are timestamp[us, UTC];
dates are date32; integers int64 (pandas Int64 when the field is optional); JSON and CSV carry
decimals and times as text, and a sidecar ``<file>.schema.json`` (Frictionless Table Schema)
says each column's type: ``read_csv`` uses it to give the same dtypes as Parquet.
Records that do not parse as their topic's event are skipped and counted (<topic>.DLQ has them).
The whole export is held in memory until it is written.

What analysts' files leave out: card tokens, always (a gateway token can be charged again: it is
no business figure); personal contact data (CONTACT_FIELDS: delivery recipient, address lines,
postal code, phone and e-mail, contact and customer names, e-mail addresses, conversation notes)
unless asked for (`include_contact_data`, `salesbus export --include-contact-data`). City and
country stay: sales by region need them. What was left out is said in the summary line, in each
CSV/JSONL sidecar and in the Parquet schema's metadata (`salesbus.left_out`).
"""
from __future__ import annotations

import csv
import json
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel

from schemas import REGISTRY
from schemas.envelope import InvalidRecord, parse_record

FORMATS = ("parquet", "csv", "jsonl")
_TABLE_SCHEMA_TYPE = {"string": "string", "int": "integer", "bool": "boolean", "decimal": "number",
                      "timestamp": "datetime", "date": "date", "json": "string"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # string | int | bool | decimal | timestamp | date | json
    nullable: bool = False


@dataclass
class Table:
    name: str  # OrderPlaced, or OrderPlaced.lines for a child table
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)


def _unwrap(annotation) -> tuple[Any, bool]:
    """(type without Optional, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = args[0] if len(args) == 1 else Any
        return inner, True
    return annotation, False


def _kind(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "bool" if all(isinstance(a, bool) for a in typing.get_args(tp)) else "string"
    if origin in (list, dict, tuple, set) or tp in (list, dict) or tp is Any:
        return "json"
    for py, kind in ((bool, "bool"), (int, "int"), (Decimal, "decimal"), (datetime, "timestamp"),
                     (date, "date"), (str, "string")):
        if isinstance(tp, type) and issubclass(tp, py):
            return kind
    return "json"


def _element_model(tp) -> type[BaseModel] | None:
    if typing.get_origin(tp) is list:
        (arg,) = typing.get_args(tp)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def columns_of(model: type[BaseModel], prefix: str = "", nullable: bool = False) -> list[Column]:
    cols: list[Column] = []
    for name, info in model.model_fields.items():
        tp, optional = _unwrap(info.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            cols += columns_of(tp, f"{prefix}{name}.", nullable or optional)
        else:
            cols.append(Column(f"{prefix}{name}", _kind(tp), nullable or optional))
    return cols


#: never exported (matched on a column's last part): a card token can be charged again
SECRET_FIELDS = frozenset({"card_token"})
#: personal contact data, exported only when asked for (matched on a column's path without its
#: first parts: `delivery.email` is OrderPlaced's, StandingOrderRequested's, ...)
CONTACT_FIELDS = frozenset({
    "delivery.recipient", "delivery.address_lines", "delivery.postal_code", "delivery.phone", "delivery.email",
    "contact_name", "customer_name", "recipient", "billing_email", "salesperson_email", "summary"})


def left_out(column: str, include_contact_data: bool = False) -> str | None:
    """Why a column is not exported ("card token", "contact data"), or None when it is."""
    parts = column.split(".")
    if parts[-1] in SECRET_FIELDS:
        return "card token"
    if not include_contact_data and any(".".join(parts[i:]) in CONTACT_FIELDS for i in range(len(parts))):
        return "contact data"
    return None


ENVELOPE = [Column("event_id", "string"), Column("event_time", "timestamp"), Column("event_source", "string"),
            Column("event_key", "string", nullable=True)]


def tables_for(event_type: str, include_contact_data: bool = False) -> list[Table]:
    """The main table of an event type, then one child table per list-of-objects field; without
    the columns `left_out` names."""
    model = REGISTRY[event_type]

    def kept(cols: list[Column]) -> list[Column]:
        return [c for c in cols if left_out(c.name, include_contact_data) is None]
    out = [Table(event_type, ENVELOPE + kept(columns_of(model)))]
    for name, info in model.model_fields.items():
        element = _element_model(_unwrap(info.annotation)[0])
        if element is not None:
            out.append(Table(f"{event_type}.{name}", [Column("event_id", "string"), Column("event_key", "string", True),
                                                      Column("index", "int")] + kept(columns_of(element))))
    for table in out:
        names = [c.name for c in table.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{table.name}: a payload field has the name of an envelope column: {names}")
    return out


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":")) if kind == "json" else value


def _flat(data: dict, as_json: dict, columns: list[Column]) -> dict[str, Any]:
    row = {}
    for col in columns:
        node: Any = as_json if col.kind == "json" else data
        for part in col.name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        row[col.name] = _cell(node, col.kind)
    return row


def rows_of(tables: list[Table], ce, event: BaseModel, key: str | None) -> None:
    """Append the event's row to its main table and its elements to the child tables."""
    data, as_json = event.model_dump(), event.model_dump(mode="json")  # typed values; JSON text for JSON columns
    main = tables[0]
    main.rows.append({"event_id": ce.id, "event_time": ce.time, "event_source": ce.source, "event_key": key,
                      **_flat(data, as_json, main.columns[len(ENVELOPE):])})
    for child in tables[1:]:
        fieldname = child.name.split(".", 1)[1]
        for i, (element, element_json) in enumerate(zip(data.get(fieldname) or [], as_json.get(fieldname) or [])):
            child.rows.append({"event_id": ce.id, "event_key": key, "index": i,
                               **_flat(element, element_json, child.columns[3:])})


# --- writing ------------------------------------------------------------------------------------------

def _scale(table: Table, col: Column) -> int:
    places = [-v.as_tuple().exponent for r in table.rows if isinstance(v := r[col.name], Decimal)]
    return max([2, *places])


def _arrow_type(table: Table, col: Column):
    import pyarrow as pa
    return {"string": pa.string(), "json": pa.string(), "int": pa.int64(), "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32()}.get(col.kind) \
        or pa.decimal128(18, _scale(table, col))


def to_frame(table: Table):
    """The table as a pandas DataFrame with the export's dtypes."""
    import pandas as pd
    data = {}
    for col in table.columns:
        values = [r[col.name] for r in table.rows]
        if col.kind == "timestamp":
            data[col.name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True).dt.as_unit("us")
        elif col.kind in ("int", "bool"):
            nullable = col.nullable or any(v is None for v in values)
            dtype = {"int": "Int64" if nullable else "int64", "bool": "boolean" if nullable else "bool"}[col.kind]
            data[col.name] = pd.Series(values, dtype=dtype)
        else:
            data[col.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=[c.name for c in table.columns])


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return format(value, "f")
    return value.isoformat() if isinstance(value, date) else value


def write_table(table: Table, path: Path, fmt: str, note: str | None = None) -> None:
    """note: what the file leaves out (kept with it: Parquet metadata, the sidecar's description)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        schema = pa.schema([pa.field(c.name, _arrow_type(table, c), nullable=True) for c in table.columns],
                           metadata={"salesbus.left_out": note} if note else None)
        pq.write_table(pa.Table.from_pandas(to_frame(table), schema=schema, preserve_index=False), path)
        return
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([c.name for c in table.columns])
            for row in table.rows:
                writer.writerow(["" if (v := _text(row[c.name])) is None else
                                 ("true" if v is True else "false" if v is False else v) for c in table.columns])
    else:
        with path.open("w", encoding="utf-8") as f:
            for row in table.rows:
                f.write(json.dumps({c.name: _text(row[c.name]) for c in table.columns}) + "\n")
    sidecar = {"name": table.name, **({"description": note} if note else {}), "fields": [
        {"name": c.name, "type": _TABLE_SCHEMA_TYPE[c.kind], **({"format": "json"} if c.kind == "json" else {}),
         **({"scale": _scale(table, c)} if c.kind == "decimal" else {}), "required": not c.nullable}
        for c in table.columns]}
    path.with_name(path.name + ".schema.json").write_text(json.dumps(sidecar, indent=2))


def read_csv(path: Path | str):
    """A CSV written by export, as a DataFrame with the same dtypes as its Parquet twin."""
    import pandas as pd
    path = Path(path)
    fields = json.loads(path.with_name(path.name + ".schema.json").read_text())["fields"]
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for f in fields:
        s = df[f["name"]].where(df[f["name"]] != "", None)
        if f["type"] == "datetime":
            df[f["name"]] = pd.to_datetime(s, utc=True, format="ISO8601").dt.as_unit("us")
        elif f["type"] == "number":
            df[f["name"]] = s.map(lambda v: None if v is None else Decimal(v)).astype(object)
        elif f["type"] == "integer":
            df[f["name"]] = s.astype("Int64" if not f["required"] or s.isna().any() else "int64")
        elif f["type"] == "boolean":
            df[f["name"]] = s.map({"true": True, "false": False}).astype("boolean" if not f["required"] else "bool")
        elif f["type"] == "date":
            df[f["name"]] = s.map(lambda v: None if v is None else date.fromisoformat(v)).astype(object)
        else:
            df[f["name"]] = s.astype(object)
    return df


def file_for(out: Path, table_name: str, several_types: bool) -> Path:
    """out itself for a single type; <stem>-<Type><suffix> for several; children add .<field>."""
    etype, _, child = table_name.partition(".")
    stem = f"{out.stem}-{etype}" if several_types else out.stem
    return out.with_name(f"{stem}.{child}{out.suffix}" if child else f"{stem}{out.suffix}")


@dataclass
class ExportResult:
    files: dict[Path, int] = field(default_factory=dict)  # path -> rows
    skipped: int = 0
    left_out: dict[str, list[str]] = field(default_factory=dict)  # why -> columns (table.column)
    include_contact_data: bool = False

    def privacy_line(self) -> str:
        """What the files leave out, in one line (printed by `salesbus export`)."""
        cards = "card tokens left out (always)"
        if self.include_contact_data:
            return f"{cards}; personal contact data INCLUDED (--include-contact-data): handle these files as personal data"
        contact = sorted({c.split(".", 1)[1] for c in self.left_out.get("contact data", [])})
        what = f" ({', '.join(contact)})" if contact else ""
        return f"{cards}; personal contact data left out{what}: --include-contact-data exports it"


def left_out_of(topics: list[str], include_contact_data: bool) -> dict[str, list[str]]:
    """why -> the table.column names the export of these topics leaves out."""
    found: dict[str, list[str]] = {}
    for etype in dict.fromkeys(topics):
        for table in tables_for(etype, include_contact_data=True):
            for col in table.columns:
                why = left_out(col.name, include_contact_data)
                if why:
                    found.setdefault(why, []).append(f"{table.name}.{col.name}")
    # card tokens are in no table even with contact data: name them from the models
    for etype in dict.fromkeys(topics):
        for col in columns_of(REGISTRY[etype]):
            if col.name.split(".")[-1] in SECRET_FIELDS:
                found.setdefault("card token", []).append(f"{etype}.{col.name}")
    return found


def export(records: Iterable, topics: list[str], out: Path, fmt: str, on_record=None,
           include_contact_data: bool = False) -> ExportResult:
    """Turn tapped records of ``topics`` into files (see module docstring); returns what was written.
    Card tokens are never written; personal contact data only with ``include_contact_data``."""
    unknown = [t for t in topics if t not in REGISTRY]
    if unknown:
        raise ValueError(f"not event topics: {', '.join(unknown)} (known: {', '.join(REGISTRY)})")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    tables = {t: tables_for(t, include_contact_data) for t in dict.fromkeys(topics)}
    result = ExportResult(left_out=left_out_of(topics, include_contact_data), include_contact_data=include_contact_data)
    for rec in records:
        if on_record:
            on_record(rec)
        try:
            ce, event = parse_record(rec.value, REGISTRY)
            if ce.type != rec.topic:
                raise InvalidRecord(f"{ce.type} on topic {rec.topic}")
        except InvalidRecord:
            result.skipped += 1
            continue
        rows_of(tables[rec.topic], ce, event, rec.key)
    for etype, group in tables.items():
        for table in group:
            path = file_for(Path(out), table.name, len(tables) > 1)
            write_table(table, path, fmt, note=result.privacy_line())
            result.files[path] = len(table.rows)
    return result


def record_estimate(kafka_conf: dict, topics: list[str]) -> int:
    """Records on the topics by their watermarks: a progress bar's total, not a count (some
    brokers, the embedded one among them, report less than is there)."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({**kafka_conf, "group.id": "salesbus-export"})
    try:
        meta = consumer.list_topics(timeout=10)
        total = 0
        for t in topics:
            for p in (meta.topics[t].partitions if t in meta.topics else {}):
                low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                total += max(high - low, 0)
        return total
    finally:
        consumer.close()
