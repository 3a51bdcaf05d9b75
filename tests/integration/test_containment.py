"""Nothing stops the flow: regression tests for the crash loops, stalls and silent drops a
black-box run found (issue 9), each publishing or calling on the real broker and PostgreSQL,
then observing what was set aside, why, and that the next record still flows."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import psycopg
import pytest

from runtime.clock import WallClock
from runtime.config import with_dbname
from runtime.embedded import free_port
from runtime.outbox import event_row
from runtime.relay import OutboxRelay, RELAY_LOCK
from runtime.retries import RetryPolicy, RetryWorker
from runtime.service import ServiceProcess
from schemas import OrderCancelled, envelope
from tests.conftest import wait_until
from tests.integration import containment_probe
from tests.integration.test_runtime_promises import order, records_on

pytestmark = pytest.mark.integration


@contextmanager
def probe(cfg, name: str, **settings):
    proc = ServiceProcess(containment_probe.make(name), cfg.model_copy(update={"retry_backoff_cap_s": 0.5, **settings}),
                          WallClock())
    proc.start()
    try:
        yield proc
        assert not proc.crashed, "a runtime loop crashed (see the log)"
    finally:
        proc.stop()


def sql(cfg, name: str, statement: str, params=()):
    with psycopg.connect(with_dbname(cfg.database_url, name), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def handled(cfg, name: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in sql(cfg, name, "SELECT aggregate_id, customer_id FROM handled ORDER BY seq")]


def dlq_of(cfg, name: str, marker: str, topic: str = "OrderPlaced") -> list:
    return [r for r in records_on(cfg, f"{topic}.DLQ", marker)
            if r.headers.get("__connect.errors.consumer.group") == name]


def ce(unique: str, **overrides) -> dict:
    base = json.loads(envelope(order(f"o-{unique}"), source="upstream-test").model_dump_json())
    base.update(overrides)
    return base


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="c-1", reason="probe", cancelled_at=order("x").placed_at)


def test_garbage_of_every_kind_is_dead_lettered_with_a_storable_reason_and_the_next_record_is_handled(cfg, bus, unique):
    # Each of these crash-looped the consumer (decode or inbox insert outside the careful path,
    # or a dead letter PostgreSQL refused to store).
    # On OrderCancelled, so the probes of other test files (OrderPlaced from the start) do not see it.
    good = json.loads(envelope(cancelled(f"o-x-{unique}"), source="upstream-test").model_dump_json())
    data_with_nul_name = {**good, "id": f"nulname-{unique}", "data": {**good["data"], "a\u0000b": 1}}
    garbage = {
        "bomb": b"[" * 100_000,
        "digits": b'{"specversion": "1.0", "id": "d", "n": ' + b"9" * 5000 + b"}",
        "id-object": json.dumps({**good, "id": {"nested": 1}}).encode(),
        "id-int": json.dumps({**good, "id": 12345}).encode(),
        "id-nul": json.dumps({**good, "id": "ev\u0000nul"}).encode(),
        "id-surrogate": json.dumps({**good, "id": "ev-\ud800"}).encode(),
        "id-8000": json.dumps({**good, "id": "x" * 8000}).encode(),
        "nan": json.dumps({**good, "id": f"nan-{unique}", "data": {**good["data"], "reason": float("nan")}}).encode(),
        "field-nul": json.dumps(data_with_nul_name).encode(),
    }
    with probe(cfg, f"contain_garbage_{unique}") as proc:
        name = proc.service.name
        for label, value in garbage.items():
            bus.publish_raw("OrderCancelled", value, key=f"{label}-{unique}")
        bus.publish_raw("OrderCancelled", b"not json", key=f"nul\x00key-{unique}")
        bus.publish_raw("OrderCancelled", b"not json", key=f"hdr-{unique}", headers={"h": b"a\x00b", "u": b"\xff\xfe"})
        bus.publish(cancelled(f"o-after-{unique}"))
        wait_until(lambda: (f"o-after-{unique}", "c-1") in handled(cfg, name), timeout=60,
                   message="the good order after the garbage to be handled")
        for label in [*garbage, "hdr"]:
            found = wait_until(lambda label=label: dlq_of(cfg, name, f"{label}-{unique}", "OrderCancelled"), timeout=30,
                               message=f"{label} in OrderPlaced.DLQ")
            reason = found[0].headers["__connect.errors.exception.message"]
            assert reason and "\x00" not in reason, (label, reason)
        nul_key = wait_until(lambda: [r for r in records_on(cfg, "OrderCancelled.DLQ", f"nul\\0key-{unique}")
                                      if r.headers.get("__connect.errors.consumer.group") == name], timeout=30,
                             message="the record with a NUL in its key dead-lettered")
        assert nul_key[0].key == f"nul\\0key-{unique}"
        assert not sql(cfg, name, "SELECT 1 FROM outbox WHERE published_at IS NULL AND failed_at IS NULL")
        reasons = {r["__connect.errors.exception.message"] for label in ("bomb", "digits", "id-int")
                   for r in [dlq_of(cfg, name, f"{label}-{unique}", "OrderCancelled")[0].headers]}
        assert any("nested deeper" in r for r in reasons) and any("4300" in r or "digits" in r for r in reasons)


def test_a_program_limit_error_is_dead_lettered_not_retried_forever(cfg, bus, unique):
    # An OperationalError subclass (SQLSTATE 54000) used to count as transient: retried forever.
    with probe(cfg, f"contain_limit_{unique}") as proc:
        name = proc.service.name
        sql(cfg, name, "INSERT INTO failing VALUES (%s, 'limit')", (f"c-limit-{unique}",))
        bus.publish(order(f"o-limit-{unique}", f"c-limit-{unique}"))
        bus.publish(order(f"o-next-{unique}"))
        wait_until(lambda: (f"o-next-{unique}", "c-1") in handled(cfg, name), timeout=60, message="the next order")
        dead = wait_until(lambda: dlq_of(cfg, name, f"o-limit-{unique}"), timeout=30, message="the dead letter")
        assert dead[0].headers["__connect.errors.exception.class.name"] == "ProgramLimitExceeded"
        assert (f"o-limit-{unique}", f"c-limit-{unique}") not in handled(cfg, name)


def test_one_failing_key_waits_aside_in_order_while_other_keys_flow(cfg, bus, unique):
    # A card that always timed out blocked every payment on its partition (and, as the retry loop
    # stopped polling, on every partition of the consumer).
    with probe(cfg, f"contain_key_{unique}") as proc:
        name = proc.service.name
        flaky, key = f"c-flaky-{unique}", f"o-flaky-{unique}"
        sql(cfg, name, "INSERT INTO failing VALUES (%s, 'transient')", (flaky,))
        bus.publish(order(key, flaky))
        bus.publish(order(key, f"c-later-{unique}"))             # same key, must wait behind
        others = [f"o-other-{i}-{unique}" for i in range(5)]
        for o in others:
            bus.publish(order(o))
        wait_until(lambda: all((o, "c-1") in handled(cfg, name) for o in others), timeout=60,
                   message="other keys to flow while one key fails")
        states = wait_until(lambda: dict(sql(cfg, name, "SELECT state, count(*) FROM retry_records "
                                                        "WHERE group_key = %s GROUP BY state", (key,))), timeout=30)
        assert states == {"retrying": 1, "waiting": 1}
        assert not [h for h in handled(cfg, name) if h[0] == key], "a later event of the key overtook the parked one"
        attempts = wait_until(lambda: sql(cfg, name, "SELECT attempts FROM retry_records WHERE state = 'retrying' "
                                                     "AND attempts >= 2 AND group_key = %s", (key,)), timeout=30)
        assert attempts, "the parked record is retried"
        sql(cfg, name, "DELETE FROM failing WHERE customer_id = %s", (flaky,))   # the gateway is back
        wait_until(lambda: len([h for h in handled(cfg, name) if h[0] == key]) == 2, timeout=60,
                   message="the parked key to be handled once it succeeds")
        assert [h for h in handled(cfg, name) if h[0] == key] == [(key, flaky), (key, f"c-later-{unique}")]
        assert not sql(cfg, name, "SELECT 1 FROM retry_records WHERE group_key = %s", (key,))
        time.sleep(1)
        assert len([h for h in handled(cfg, name) if h[0] == key]) == 2, "handled once each"


def test_a_record_past_the_retry_window_is_dead_lettered_and_its_key_moves_on(cfg, bus, unique):
    with probe(cfg, f"contain_window_{unique}", retry_window_s=1.0) as proc:
        name = proc.service.name
        flaky, key = f"c-forever-{unique}", f"o-forever-{unique}"
        sql(cfg, name, "INSERT INTO failing VALUES (%s, 'transient')", (flaky,))
        bus.publish(order(key, flaky))
        bus.publish(order(key, f"c-after-{unique}"))
        wait_until(lambda: (key, f"c-after-{unique}") in handled(cfg, name), timeout=60,
                   message="the key to move on after the window")
        dead = wait_until(lambda: dlq_of(cfg, name, key), timeout=30, message="the given-up record in the DLQ")
        assert "gave up after" in dead[0].headers["__connect.errors.exception.message"]
        assert sql(cfg, name, "SELECT state FROM retry_records WHERE group_key = %s", (key,)) == [("dead_lettered",)]


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_batch_retried_in_place_shows_as_a_stall_in_metrics_and_readyz(cfg, bus, unique):
    port = free_port()
    with probe(cfg, f"contain_stall_{unique}", metrics_port=port, stall_degraded_after_s=1.0) as proc:
        name = proc.service.name
        down = f"c-down-{unique}"
        sql(cfg, name, "INSERT INTO failing VALUES (%s, 'disconnect')", (down,))
        bus.publish(order(f"o-down-{unique}", down))
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(scrape(port, "/readyz")),
                                  timeout=60, message="/readyz to report the stall")
        assert "degraded: consumer" in body
        metrics = scrape(port, "/metrics")[1]
        line = next(li for li in metrics.splitlines()
                    if li.startswith("salesbus_stalled_seconds") and name in li and 'loop="consumer"' in li)
        assert float(line.split()[-1]) >= 1.0
        assert f'salesbus_consumer_lag{{partition="' in metrics and name in metrics
        sql(cfg, name, "DELETE FROM failing WHERE customer_id = %s", (down,))
        wait_until(lambda: (f"o-down-{unique}", down) in handled(cfg, name), timeout=60, message="flowing again")
        wait_until(lambda: scrape(port, "/readyz")[0] == 200, timeout=30, message="ready again")
        assert handled(cfg, name).count((f"o-down-{unique}", down)) == 1


def test_same_event_id_from_two_sources_is_two_events(cfg, bus, unique):
    with probe(cfg, f"contain_source_{unique}") as proc:
        name = proc.service.name
        bus.publish(order(f"o-a-{unique}", "c-a"), event_id=f"ev-1-{unique}", source="erp-a")
        bus.publish(order(f"o-b-{unique}", "c-b"), event_id=f"ev-1-{unique}", source="erp-b")
        bus.publish(order(f"o-a-{unique}", "c-a"), event_id=f"ev-1-{unique}", source="erp-a")  # a true repeat
        wait_until(lambda: {(f"o-a-{unique}", "c-a"), (f"o-b-{unique}", "c-b")} <= set(handled(cfg, name)),
                   timeout=60, message="both sources' ev-1 handled")
        time.sleep(1)
        assert handled(cfg, name).count((f"o-a-{unique}", "c-a")) == 1


def test_relay_sets_aside_what_the_broker_refuses_and_publishes_the_rows_behind(cfg, bus, unique):
    with probe(cfg, f"contain_relay_{unique}") as proc:
        name = proc.service.name
        big = b"x" * 1_200_000
        small = event_row(envelope(OrderCancelled(order_id=f"o-small-{unique}", customer_id="c-1", reason="probe",
                                                  cancelled_at=order("x").placed_at), source=name))
        with psycopg.connect(with_dbname(cfg.database_url, name), autocommit=True) as conn, conn.transaction():
            for event_id, topic, value in [(f"big-{unique}", "OrderCancelled", big),
                                           (f"dlq-big-{unique}", "OrderPlaced.DLQ", big),
                                           (small.event_id, small.topic, small.value)]:
                conn.execute("INSERT INTO outbox (event_id, topic, key, value, headers) VALUES (%s, %s, %s, %s, %s)",
                             (event_id, topic, f"k-{event_id}", value,
                              json.dumps({"salesbus.event.id": event_id, "__connect.errors.consumer.group": name})))
        wait_until(lambda: sql(cfg, name, "SELECT published_at FROM outbox WHERE event_id = %s",
                               (small.event_id,))[0][0] is not None, timeout=60, message="the row behind published")
        rows = dict(sql(cfg, name, "SELECT event_id, failure FROM outbox WHERE failed_at IS NOT NULL"))
        assert "MSG_SIZE_TOO_LARGE" in rows[f"big-{unique}"]
        assert "published truncated" in rows[f"dlq-big-{unique}"]
        copy = wait_until(lambda: records_on(cfg, "OrderPlaced.DLQ", f"dlq-big-{unique}"), timeout=30)[0]
        assert "outbox row" in copy.headers["salesbus.dlq.full"] and name in copy.headers["salesbus.dlq.full"]
        assert not proc.crashed


def test_a_standby_relay_does_not_listen(cfg, unique):
    # A standby LISTENed but never read: psycopg kept every NOTIFY in memory, without bound.
    with probe(cfg, f"contain_standby_{unique}") as proc:
        name = proc.service.name
        url = with_dbname(cfg.database_url, name)
        standby = OutboxRelay(name, url, cfg.kafka_common())
        with psycopg.connect(url, autocommit=True) as conn:
            thread = threading.Thread(target=standby._serve, args=(conn,), daemon=True)
            wait_until(lambda: sql(cfg, name, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                                   (RELAY_LOCK,)), message="the leader relay to hold the lock")
            thread.start()
            time.sleep(1.5)
            try:
                assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0] == 0
            finally:
                standby.stop()
                thread.join(5)


def test_inbox_rows_older_than_the_retention_are_pruned_but_parked_ones_kept(cfg, unique):
    with probe(cfg, f"contain_prune_{unique}") as proc:
        name = proc.service.name
        sql(cfg, name, """INSERT INTO inbox (source, event_id, topic, partition, "offset", outcome, received_at)
                          VALUES ('s', 'old', 't', 0, 1, 'handled', now() - interval '40 days'),
                                 ('s', 'old-parked', 't', 0, 2, 'parked', now() - interval '40 days'),
                                 ('s', 'recent', 't', 0, 3, 'handled', now() - interval '1 day')""")
        # (the process's own retry worker may prune first: what is left is what counts)
        RetryWorker(proc.consumer_processor(), proc.pool, RetryPolicy(prune_batch=1)).prune()
        left = {r[0] for r in sql(cfg, name, "SELECT event_id FROM inbox WHERE source = 's'")}
        assert left == {"old-parked", "recent"}
