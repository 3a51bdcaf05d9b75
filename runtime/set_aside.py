"""`salesbus set-aside`: what each service has set aside, from its own database.

Two kinds of listing, each a name and SQL over the service's own tables returning rows with at
least (id, reason, at): the runtime's (`RUNTIME_SET_ASIDE`, the same for every service) and the
service's own (`Service.set_aside`). A listing whose table or column is not there (a database
not migrated yet) reads "(not available: …)"; the others still run. Queries run read-only with a
statement timeout: listing never changes or blocks a service's data.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

import psycopg
from psycopg.rows import dict_row

from runtime.config import Settings

RUNTIME_SET_ASIDE: dict[str, str] = {
    "records retrying":
        "SELECT event_id AS id, last_error AS reason, next_attempt_at AS at, topic, attempts, state "
        "FROM retry_records WHERE state IN ('retrying', 'waiting') ORDER BY seq LIMIT 100",
    "records given up after retries":
        "SELECT event_id AS id, last_error AS reason, resolved_at AS at, topic, attempts "
        "FROM retry_records WHERE state = 'dead_lettered' ORDER BY resolved_at DESC LIMIT 100",
    # runtime/parking.py: events that waited longer than parked_event_expiry_s for another
    "expired parked events":
        "SELECT subject || '/' || slot AS id, reason, expired_at AS at, event_type "
        "FROM parked_expired ORDER BY expired_at DESC LIMIT 100",
    "outbox rows the broker refused":
        "SELECT id::text AS id, failure AS reason, failed_at AS at, topic "
        "FROM outbox WHERE failed_at IS NOT NULL ORDER BY failed_at DESC LIMIT 100",
}
#: a listing's relation, column or function not there yet: the database is behind the code
_NOT_THERE = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction,
              psycopg.errors.InvalidSchemaName)
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\s*;?\s*$", re.IGNORECASE)
STATEMENT_TIMEOUT_MS = 15000
TEXT_REASON = 300


@dataclass
class Listing:
    name: str
    origin: str                      # "runtime" or the service's name
    rows: list[dict[str, Any]] = field(default_factory=list)
    limit: int | None = None         # the listing's own LIMIT: a full page means "at least"
    unavailable: str | None = None

    @property
    def count(self) -> str:
        if self.unavailable is not None:
            return f"(not available: {self.unavailable})"
        n = len(self.rows)
        return f"{n}+" if self.limit is not None and n >= self.limit else str(n)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "origin": self.origin, "count": len(self.rows) if self.unavailable is None else None,
                "at_least": self.limit is not None and len(self.rows) >= self.limit,
                "unavailable": self.unavailable, "rows": self.rows}


@dataclass
class ServiceSetAside:
    service: str
    listings: list[Listing] = field(default_factory=list)
    unavailable: str | None = None   # the service or its database could not be reached at all

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "unavailable": self.unavailable,
                "listings": [listing.as_json() for listing in self.listings]}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return repr(bytes(value)[:200])
    if isinstance(value, (list, dict)):
        return json.loads(json.dumps(value, default=str))
    return str(value)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_listing(conn: psycopg.Connection, name: str, sql: str, origin: str) -> Listing:
    m = _LIMIT.search(sql)
    listing = Listing(name, origin, limit=int(m.group(1)) if m else None)
    try:
        rows = conn.execute(sql).fetchall()
    except _NOT_THERE as exc:
        listing.unavailable = _first_line(exc)
        return listing
    except psycopg.errors.QueryCanceled:
        listing.unavailable = f"timed out after {STATEMENT_TIMEOUT_MS // 1000}s"
        return listing
    except psycopg.errors.Error as exc:  # a listing's SQL is wrong: say so, the others still run
        listing.unavailable = f"failed: {_first_line(exc)}"
        return listing
    listing.rows = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    return listing


def collect(service, cfg: Settings | None = None, database_url: str | None = None) -> ServiceSetAside:
    """Every listing of one service (a name for `runtime.service.load_service`, or a `Service`)."""
    from runtime.service import Service, load_service

    cfg = cfg or Settings()
    if isinstance(service, Service):
        svc = service
    else:
        try:
            svc = load_service(service)
        except (ImportError, AttributeError) as exc:
            return ServiceSetAside(str(service), unavailable=f"unknown service: {exc}")
    report = ServiceSetAside(svc.name)
    try:
        url = database_url or cfg.database_for(svc.name)
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
    except (psycopg.Error, RuntimeError) as exc:
        report.unavailable = f"database: {_first_line(exc)}"
        return report
    with conn:
        # Every statement is its own read-only transaction: a failing listing spoils no other.
        conn.execute("SET default_transaction_read_only = on")
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        for name, sql in RUNTIME_SET_ASIDE.items():
            report.listings.append(run_listing(conn, name, sql, "runtime"))
        for name, sql in (svc.set_aside or {}).items():
            report.listings.append(run_listing(conn, name, sql, svc.name))
    return report


def collect_all(services: Iterable, cfg: Settings | None = None) -> list[ServiceSetAside]:
    cfg = cfg or Settings()
    return [collect(s, cfg) for s in services]


def _row_text(row: dict[str, Any]) -> str:
    reason = str(row.get("reason") or "")
    reason = reason if len(reason) <= TEXT_REASON else reason[:TEXT_REASON] + "…"
    extra = "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("id", "reason", "at"))
    return f"    {row.get('id', '-')}  {row.get('at') or '-'}  {extra}\n        {reason or '-'}"


def report_text(reports: list[ServiceSetAside]) -> str:
    """Per service: every listing's count, then the rows of those that have any."""
    lines: list[str] = []
    for rep in reports:
        if rep.unavailable is not None:
            lines += [f"{rep.service}: (not available: {rep.unavailable})", ""]
            continue
        lines.append(f"{rep.service}:")
        width = max((len(listing.name) for listing in rep.listings), default=0)
        for listing in rep.listings:
            lines.append(f"  {listing.name:<{width}}  {listing.count}")
        for listing in rep.listings:
            if listing.rows:
                lines.append(f"  {listing.name} ({listing.count}):")
                lines += [_row_text(row) for row in listing.rows]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def report_json(reports: list[ServiceSetAside]) -> dict[str, Any]:
    return {"services": [rep.as_json() for rep in reports]}
