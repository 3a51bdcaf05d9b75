"""`salesbus status`: is the system healthy, and if not, where to look.

Per service it reads what the service itself exposes — /readyz and the stall gauge on its
metrics port, its consumer group's committed offsets against the topics' ends, its own database
(outbox backlog, records retrying, what it set aside in the last hour, its own queues such as
emails pending) — plus the dead letters each DLQ topic gained in the last hour. Every probe is
bounded in time, and one that cannot answer says why instead of failing the report.

Something "needs attention" (exit code 1) when a service is not ready or cannot be reached, a
loop is stalled, the outbox's oldest row is older than `outbox_age_limit_s`, records were dead
lettered, given up or refused in the last hour, or lag exceeds `lag_limit`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from runtime.config import Settings
from runtime.outbox import PENDING_SQL
from runtime.set_aside import _NOT_THERE, RUNTIME_SET_ASIDE

HOUR_S = 3600
TIMEOUT_S = 5.0
DB_QUERIES = {
    "outbox": PENDING_SQL,
    "retrying": "SELECT count(*) FROM retry_records WHERE state IN ('retrying', 'waiting')",
}


@dataclass
class ServiceStatus:
    name: str
    ready: bool | None = None
    readiness: str = ""
    stalled: dict[str, float] = field(default_factory=dict)      # loop -> seconds
    lag: dict[str, int] = field(default_factory=dict)            # topic -> records behind
    outbox_backlog: int | None = None
    outbox_oldest_s: float | None = None
    retrying: int | None = None
    set_aside_last_hour: dict[str, int] = field(default_factory=dict)
    backlogs: dict[str, dict[str, Any]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)    # probe -> why it could not answer
    attention: list[str] = field(default_factory=list)


@dataclass
class Report:
    services: list[ServiceStatus]
    dead_letters_last_hour: dict[str, int]
    attention: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"ok": not self.attention, "attention": self.attention,
                "dead_letters_last_hour": self.dead_letters_last_hour,
                "services": [asdict(s) for s in self.services]}


def _probe_http(st: ServiceStatus, metrics_url: str | None) -> None:
    if metrics_url is None:
        st.unavailable["readyz"] = "no metrics address known (not started by `salesbus up`?)"
        return
    try:
        r = httpx.get(f"{metrics_url}/readyz", timeout=TIMEOUT_S)
        st.ready, st.readiness = r.status_code == 200, r.text.strip()[:300]
        m = httpx.get(f"{metrics_url}/metrics", timeout=TIMEOUT_S)
        for family in text_string_to_metric_families(m.text):
            if family.name == "salesbus_stalled_seconds":
                for s in family.samples:
                    if s.value > 0:
                        st.stalled[s.labels.get("loop", "?")] = round(s.value, 1)
    except httpx.HTTPError as exc:
        st.ready, st.readiness = False, f"unreachable at {metrics_url}: {type(exc).__name__}"


def _probe_db(st: ServiceStatus, cfg: Settings, set_aside: dict[str, str], backlogs: dict[str, str]) -> None:
    try:
        conn = psycopg.connect(cfg.database_for(st.name), connect_timeout=int(TIMEOUT_S), autocommit=True,
                               options=f"-c statement_timeout={int(TIMEOUT_S * 1000)} "
                                       "-c default_transaction_read_only=on")
    except (psycopg.Error, RuntimeError) as exc:
        st.unavailable["database"] = str(exc).splitlines()[0][:200]
        return
    with conn:
        def one(name: str, sql: str):
            try:
                return conn.execute(sql).fetchone()
            except _NOT_THERE as exc:
                st.unavailable[name] = f"not migrated: {str(exc).splitlines()[0][:120]}"
            except psycopg.Error as exc:
                st.unavailable[name] = str(exc).splitlines()[0][:200]
            return None
        if row := one("outbox", DB_QUERIES["outbox"]):
            st.outbox_backlog, st.outbox_oldest_s = row[0], (round(float(row[1]), 1) if row[1] is not None else None)
        if row := one("retrying", DB_QUERIES["retrying"]):
            st.retrying = row[0]
        for name, sql in {**RUNTIME_SET_ASIDE, **set_aside}.items():
            # each listing is a bounded SELECT with an `at` column: count what it shows for the last hour
            if name == "records retrying":
                continue
            if row := one(name, f"SELECT count(*) FROM ({sql}) s WHERE at > now() - interval '{HOUR_S} seconds'"):
                st.set_aside_last_hour[name] = row[0]
        for name, sql in backlogs.items():
            if row := one(name, sql):
                st.backlogs[name] = {"count": row[0], "oldest_s": round(float(row[1]), 1) if row[1] is not None else None}


def _lag(consumer: Consumer, group: str, topics: list[str], meta) -> tuple[dict[str, int], str | None]:
    parts = [TopicPartition(t, p) for t in topics if t in meta.topics for p in meta.topics[t].partitions]
    if not parts:
        return {}, None
    try:
        committed = consumer.committed(parts, timeout=TIMEOUT_S)
    except Exception as exc:  # KafkaException: the group coordinator did not answer
        return {}, f"committed offsets of {group}: {exc}"
    lag: dict[str, int] = {}
    for tp in committed:
        low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=TIMEOUT_S,
                                                   cached=False)
        done = tp.offset if tp.offset >= 0 else low   # nothing committed yet: behind by all it holds
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - done)
    return lag, None


def _dead_letters_last_hour(consumer: Consumer, meta, now_ms: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for topic in sorted(t for t in meta.topics if t.endswith(".DLQ")):
        parts = [TopicPartition(topic, p, now_ms - HOUR_S * 1000) for p in meta.topics[topic].partitions]
        n = 0
        for tp in consumer.offsets_for_times(parts, timeout=TIMEOUT_S):
            if tp.offset >= 0:  # -1: nothing at or after that time
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=TIMEOUT_S,
                                                         cached=False)
                n += max(0, high - tp.offset)
        found[topic] = n
    return found


def collect(services: dict[str, dict[str, Any]], cfg: Settings, *, lag_limit: int = 10_000,
            outbox_age_limit_s: float = 60.0) -> Report:
    """services: name -> {"metrics_url": ..., "topics": [...], "group": ..., "set_aside": {...}, "backlogs": {...}}"""
    statuses = [ServiceStatus(name) for name in services]
    attention: list[str] = []
    dead: dict[str, int] = {}
    kafka_error = None
    consumer = None
    try:
        conf = cfg.kafka_common()
        meta = AdminClient(conf).list_topics(timeout=TIMEOUT_S)
        consumer = Consumer({**conf, "group.id": "salesbus-status", "enable.auto.commit": False})
        dead = _dead_letters_last_hour(consumer, meta, int(time.time() * 1000))
    except Exception as exc:  # KafkaException, no broker configured
        kafka_error = str(exc)[:200]
        attention.append(f"broker: {kafka_error}")
    for st in statuses:
        info = services[st.name]
        _probe_http(st, info.get("metrics_url"))
        if info.get("database", True):  # analytics keeps its state in changelog topics, not PostgreSQL
            _probe_db(st, cfg, info.get("set_aside", {}), info.get("backlogs", {}))
        if consumer is not None and info.get("topics"):
            st.lag, err = _lag(consumer, info.get("group", st.name), info["topics"], meta)
            if err:
                st.unavailable["lag"] = err
        elif kafka_error and info.get("topics"):
            st.unavailable["lag"] = kafka_error
        st.attention = _needs_attention(st, lag_limit, outbox_age_limit_s)
        attention += [f"{st.name}: {a}" for a in st.attention]
    if consumer is not None:
        consumer.close()
    attention += [f"{topic}: {n} dead letter(s) in the last hour" for topic, n in dead.items() if n]
    return Report(statuses, dead, attention)


def _needs_attention(st: ServiceStatus, lag_limit: int, outbox_age_limit_s: float) -> list[str]:
    out = []
    if st.ready is False:
        out.append(f"not ready: {st.readiness}")
    out += [f"{loop} stalled for {s:.0f}s" for loop, s in st.stalled.items()]
    if st.outbox_oldest_s is not None and st.outbox_oldest_s > outbox_age_limit_s:
        out.append(f"outbox: {st.outbox_backlog} unpublished, oldest {st.outbox_oldest_s:.0f}s")
    out += [f"{name}: {n} in the last hour" for name, n in st.set_aside_last_hour.items() if n]
    out += [f"lag {n} on {topic}" for topic, n in st.lag.items() if n > lag_limit]
    if "database" in st.unavailable:
        out.append(f"database: {st.unavailable['database']}")
    return out


def targets(cfg: Settings, names: list[str], metrics_urls: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What to probe for each service: its metrics address (given, or from the embedded stack's
    stack.json), the topics its consumer group reads, its set-aside listings and backlogs."""
    from runtime.service import load_service

    known = (cfg.embedded() or {}).get("services", {})
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        url = metrics_urls.get(name) or (f"http://127.0.0.1:{known[name]['metrics']}" if name in known else None)
        if name == "analytics":  # a faust app: its group is its app id (`salesbus up` runs it as
            # "analytics"; Settings.analytics_app_id names another), its topics its own list
            from services.analytics.facts import TOPICS
            out[name] = {"metrics_url": url, "topics": list(TOPICS),
                         "group": cfg.analytics_app_id or "analytics", "database": False}
            continue
        svc = load_service(name)
        out[name] = {"metrics_url": url, "topics": list(svc.handlers), "group": name,
                     "set_aside": svc.set_aside, "backlogs": svc.backlogs}
    return out


def render(report: Report, console) -> None:
    from rich.table import Table

    table = Table(title="salesbus status", title_justify="left")
    for col in ("service", "ready", "lag", "outbox", "retrying", "set aside (1h)", "queues", "notes"):
        table.add_column(col)
    for st in report.services:
        ready = "?" if st.ready is None else ("[green]ready[/green]" if st.ready else "[red]no[/red]")
        lag = ", ".join(f"{t} {n}" for t, n in st.lag.items() if n) or ("0" if st.lag else "-")
        outbox = "-" if st.outbox_backlog is None else (
            f"{st.outbox_backlog}" + (f" (oldest {st.outbox_oldest_s:.0f}s)" if st.outbox_oldest_s else ""))
        aside = ", ".join(f"{k} {n}" for k, n in st.set_aside_last_hour.items() if n) or "0"
        queues = ", ".join(f"{k} {v['count']}" + (f" (oldest {v['oldest_s']:.0f}s)" if v["count"] and v["oldest_s"]
                                                  else "") for k, v in st.backlogs.items()) or "-"
        notes = "; ".join(st.attention + [f"{k}: {v}" for k, v in st.unavailable.items() if k != "database"])
        table.add_row(st.name, ready, lag, outbox, "-" if st.retrying is None else str(st.retrying), aside, queues,
                      notes)
    console.print(table)
    dlq = ", ".join(f"{t} {n}" for t, n in report.dead_letters_last_hour.items() if n)
    console.print(f"dead letters in the last hour: {dlq or 'none'}")
    console.print("[green]all good[/green]" if not report.attention else
                  f"[red]needs attention[/red] ({len(report.attention)}):\n  " + "\n  ".join(report.attention))
