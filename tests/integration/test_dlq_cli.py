"""Operators' tools for what was set aside: `salesbus dlq list/show/redrive` and `salesbus set-aside`,
against the real broker and PostgreSQL, with a probe service dead-lettering real records."""
from __future__ import annotations

import json
import re
import time
from contextlib import closing, contextmanager
from datetime import datetime, timezone

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from runtime import db
from runtime.cli import app
from runtime.clock import WallClock
from runtime.config import with_dbname
from runtime.dlq import list_dead_letters, read_dead_letter, redrive, show_text, summary
from runtime.service import Service, ServiceProcess
from runtime.set_aside import RUNTIME_SET_ASIDE, collect, report_text
from runtime.tap import read
from schemas import OrderPlaced
from tests.conftest import wait_until
from tests.integration import probe_service
from tests.integration.test_runtime_promises import order, probe

pytestmark = pytest.mark.integration
runner = CliRunner()


def env(cfg) -> dict[str, str]:
    return {"SALESBUS_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap, "SALESBUS_DATABASE_URL": cfg.database_url}


def cli(cfg, *args: str):
    result = runner.invoke(app, list(args), env=env(cfg))
    assert result.exit_code == 0, f"salesbus {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.output


def times(cfg, db_name: str, aggregate_id: str) -> int:
    with psycopg.connect(with_dbname(cfg.database_url, db_name)) as conn:
        rows = conn.execute("SELECT times FROM effects WHERE aggregate_id = %s AND topic = 'OrderPlaced'",
                            (aggregate_id,)).fetchall()
    return rows[0][0] if rows else 0


def letters(cfg, key: str, group: str | None = None):
    """This key's dead letters on OrderPlaced.DLQ (of one group), oldest first."""
    found = list_dead_letters(cfg.kafka_common(), ["OrderPlaced"], group=group, idle_exit_s=1.0)
    return [d for d in found["OrderPlaced.DLQ"] if d.key == key.encode()]


def record_at(cfg, topic: str, partition: int, offset: int):
    with closing(read(cfg.kafka_common(), [topic], follow=False, idle_exit_s=2.0,
                      start_at={(topic, partition): offset})) as messages:
        for msg in messages:
            if msg.offset() == offset:
                return msg
    raise AssertionError(f"nothing at {topic} {partition}:{offset}")


def committed(cfg, group: str, topic: str, partition: int) -> int:
    c = Consumer({**cfg.kafka_common(), "group.id": group})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        c.close()


def test_dlq_list_show_and_redrive_one_record(cfg, bus, unique):
    name = f"probe_dlqcli_{unique}"
    key = f"garbage-{unique}"
    garbage = b"{garbage " + unique.encode()
    with probe(cfg, name):
        bus.publish_raw("OrderPlaced", garbage, key=key, headers={"x-origin": "edi-gateway", "x-batch": "7"})
        [dl] = wait_until(lambda: letters(cfg, key, group=name), timeout=60, message="the garbage's dead letter")

    # the functions: the record, its reason and group, where it came from
    assert dl.topic == "OrderPlaced.DLQ"
    assert dl.group == name and dl.exception == "InvalidRecord" and "not JSON" in dl.reason
    assert dl.original[0] == "OrderPlaced" and dl.original[2] is not None
    assert dl.value == garbage
    found = list_dead_letters(cfg.kafka_common(), ["OrderPlaced.DLQ"], group=name)
    # (the probe's group reads OrderPlaced from the start: other tests' garbage is dead-lettered too)
    mine = [d for d in found["OrderPlaced.DLQ"] if d.key == key.encode()]
    assert summary(mine) == [{"group": name, "exception": "InvalidRecord", "records": 1}]
    assert list_dead_letters(cfg.kafka_common(), ["OrderPlaced"], group=name,
                             since=datetime.now(timezone.utc))["OrderPlaced.DLQ"] == []

    # the command: summary then records, pretty and JSON
    out = cli(cfg, "dlq", "list", "OrderPlaced", "--group", name)
    # (counts include other tests' garbage the probe read from the topic's start)
    assert re.search(r"OrderPlaced\.DLQ: \d+ dead letter\(s\)", out)
    assert re.search(rf"\d+  group={name}  InvalidRecord", out)
    assert f"{dl.partition}:{dl.offset}" in out and f"key={key}" in out and "not JSON" in out
    assert f"from OrderPlaced/{dl.original[1]}/{dl.original[2]}" in out
    listed = json.loads(cli(cfg, "dlq", "list", "OrderPlaced.DLQ", "--group", name, "--json"))
    [topic] = listed["topics"]
    assert topic["topic"] == "OrderPlaced.DLQ" and topic["records"] >= 1
    [row] = [r for r in topic["dead_letters"] if r["key"] == key]
    assert (row["group"], row["exception"], row["offset"], row["key"]) == (name, "InvalidRecord", dl.offset, key)
    assert row["original"]["topic"] == "OrderPlaced" and "not JSON" in row["reason"]
    everything = cli(cfg, "dlq", "list")  # every *.DLQ topic on the broker
    assert f"group={name}" in everything and "DLQ topic(s) read" in everything

    # show: headers, key and a bounded repr of a value that is not JSON
    shown = cli(cfg, "dlq", "show", "OrderPlaced.DLQ", f"{dl.partition}:{dl.offset}")
    assert "x-origin: edi-gateway" in shown and f"__connect.errors.consumer.group: {name}" in shown
    assert f"key: {key.encode()!r}" in shown
    assert "value (not JSON" in shown and repr(garbage) in shown
    missing = runner.invoke(app, ["dlq", "show", "OrderPlaced.DLQ", "0:999999999"], env=env(cfg))
    assert missing.exit_code == 2 and "no record at" in missing.output

    # redrive: back on the original topic, original headers, the two re-drive headers, same key and value
    done = json.loads(cli(cfg, "dlq", "redrive", "OrderPlaced.DLQ", f"{dl.partition}:{dl.offset}", "--json"))
    assert done["topic"] == "OrderPlaced" and done["group"] == name
    msg = record_at(cfg, "OrderPlaced", done["partition"], done["offset"])
    assert msg.value() == garbage and msg.key() == key.encode()
    headers = [(k, v.decode()) for k, v in msg.headers()]
    # (the dead letter keeps the original headers, not their order: the outbox stores them as jsonb)
    assert sorted(headers[:-2]) == [("x-batch", "7"), ("x-origin", "edi-gateway")]
    assert headers[-2:] == [("salesbus.redrive.group", name),
                            ("salesbus.redrive.from", f"OrderPlaced.DLQ/{dl.partition}/{dl.offset}")]
    # to another group when told; the pretty answer says where it landed
    out = cli(cfg, "dlq", "redrive", "OrderPlaced.DLQ", f"{dl.partition}:{dl.offset}", "--group", f"nobody_{unique}")
    assert f"for consumer group nobody_{unique}" in out and "to OrderPlaced partition" in out


def test_redrive_to_one_group_handles_a_rejected_record_once(cfg, bus, unique):
    name, bystander = f"probe_redrive_{unique}", f"probe_bystander_{unique}"
    oid = f"o-redrive-{unique}"
    probe_service.REJECTING.add(oid)
    try:
        with probe(cfg, name), probe(cfg, bystander):
            event_id = bus.publish(order(oid))
            wait_until(lambda: {d.group for d in letters(cfg, oid)} >= {name, bystander}, timeout=60,
                       message="both groups to dead-letter the order")
            [first] = letters(cfg, oid, group=name)
            assert first.exception == "Rejected" and first.event_id == event_id
            assert '"order_id": "' + oid + '"' in show_text(first)  # JSON pretty-printed
            assert times(cfg, name, oid) == times(cfg, bystander, oid) == 0

            # re-driven while the probe still rejects it: dead-lettered again, as a new dead letter
            redrive(cfg.kafka_common(), first.topic, first.partition, first.offset)
            [_, again] = wait_until(lambda: len(letters(cfg, oid, group=name)) == 2 and letters(cfg, oid, group=name),
                                    timeout=60, message="the re-driven record to be dead-lettered again")
            assert again.exception == "Rejected" and again.event_id == event_id
            assert again.header("salesbus.redrive.group") is None and again.header("salesbus.redrive.from") is None

            # the probe accepts it now; its re-drive arrives twice
            probe_service.REJECTING.discard(oid)
            dl = read_dead_letter(cfg.kafka_common(), again.topic, again.partition, again.offset)
            copies = [redrive(cfg.kafka_common(), dl.topic, dl.partition, dl.offset) for _ in range(2)]
            assert {c.group for c in copies} == {name}
            wait_until(lambda: times(cfg, name, oid) >= 1, timeout=60, message="the re-driven record's effect")
            for c in copies:  # both copies consumed (and committed) by the named group
                wait_until(lambda c=c: committed(cfg, name, c.topic, c.partition) > c.offset, timeout=60,
                           message=f"{name} to get past {c.topic} {c.partition}:{c.offset}")
            time.sleep(1.0)  # give a wrong second effect every chance
        assert times(cfg, name, oid) == 1
        assert times(cfg, bystander, oid) == 0, "another group handled a re-drive meant for one group"
        assert len(letters(cfg, oid, group=name)) == 2
        assert len(letters(cfg, oid, group=bystander)) == 1
    finally:
        probe_service.REJECTING.discard(oid)


def test_set_aside_lists_counts_per_service(cfg, harness, unique):
    harness.start("cart")
    out = cli(cfg, "set-aside", "cart")
    assert out.startswith("cart:")
    for listing in RUNTIME_SET_ASIDE:
        line = next(line for line in out.splitlines() if line.strip().startswith(listing))
        assert line.split()[-1].rstrip("+").isdigit(), line
    [svc] = json.loads(cli(cfg, "set-aside", "cart", "--json"))["services"]
    assert svc["service"] == "cart" and svc["unavailable"] is None
    assert [lst["name"] for lst in svc["listings"]] == list(RUNTIME_SET_ASIDE)
    assert all(isinstance(lst["count"], int) for lst in svc["listings"])

    # a service's own listings come after the runtime's: counts first, then rows
    own = Service(name="cart", set_aside={
        "probe listing": "SELECT 'x-1' AS id, 'held for review' AS reason, now() AS at, 42 AS amount",
        "ghost rows": "SELECT id, reason, at FROM no_such_table"})
    rep = collect(own, cfg)
    assert [lst.name for lst in rep.listings] == [*RUNTIME_SET_ASIDE, "probe listing", "ghost rows"]
    text = report_text([rep])
    counts = re.search(r"\n  probe listing +1\n", text)
    assert counts and counts.end() < text.index("x-1") and "held for review" in text and "amount=42" in text
    assert 'ghost rows' in text and '(not available: relation "no_such_table" does not exist)' in text

    # a database behind the code: missing tables and columns read "(not available: …)"
    bare = f"bare_{unique}"
    db.ensure_database(with_dbname(cfg.database_url, bare))
    with psycopg.connect(with_dbname(cfg.database_url, bare), autocommit=True) as conn:
        conn.execute("CREATE TABLE outbox (id bigserial PRIMARY KEY, topic text)")
    text = report_text([collect(Service(name=bare), cfg)])
    assert '(not available: relation "retry_records" does not exist)' in text
    assert 'outbox rows the broker refused  (not available: column "failure" does not exist)' in text
    # no database at all, or no such service: said, and the other services still listed
    result = runner.invoke(app, ["set-aside", "no_such_service", "cart"], env=env(cfg))
    assert result.exit_code == 0
    assert "no_such_service: (not available: unknown service" in result.output and "\ncart:" in result.output
    assert "(not available: database:" in report_text([collect(Service(name=f"nodb_{unique}"), cfg)])
