"""The relay's outbox gauges on a real, migrated database (no broker: only their SQL runs).

What broke: the backlog gauge, read every second by every relay, counted `published_at IS NULL`
alone. No index answers that (outbox_pending is partial on published AND failed being NULL), so each
reading scanned every published row the outbox keeps for its retention (in a 20,000-order bench
run: payments' 62,608 rows, 131 times); and a set-aside row counted as waiting, so
salesbus_outbox_oldest_age_seconds grew for good and SalesbusOutboxOld never cleared."""
from __future__ import annotations

import psycopg

from runtime import metrics
from runtime.outbox import PENDING_SQL
from runtime.relay import OutboxRelay


def _fill(conn, published: int) -> None:
    conn.execute(
        """INSERT INTO outbox (event_id, topic, key, value, headers, created_at, published_at)
           SELECT 'e-' || g, 'OrderPlaced', 'k', '\\x7b7d'::bytea, '{}'::jsonb, now() - interval '2 hours',
                  now() - interval '1 hour'
           FROM generate_series(1, %s) g""", (published,))
    # set aside two hours ago: terminal, not waiting
    conn.execute("""INSERT INTO outbox (event_id, topic, key, value, headers, created_at, failed_at, failure)
                    VALUES ('e-bad', 'OrderPlaced', 'k', '\\x7b7d'::bytea, '{}'::jsonb,
                            now() - interval '2 hours', now() - interval '2 hours', 'too large')""")
    conn.execute("INSERT INTO outbox (event_id, topic, key, value, headers) "
                 "VALUES ('e-new', 'OrderPlaced', 'k', '\\x7b7d'::bytea, '{}'::jsonb)")
    conn.execute("ANALYZE outbox")


def test_the_backlog_gauges_count_only_rows_waiting_to_be_published(orders):
    relay = OutboxRelay("orders", orders.url, {"bootstrap.servers": "127.0.0.1:1"}, broker_check_s=1e9)
    relay._last_prune = float("inf")   # only the gauges: no broker check, no prune
    with psycopg.connect(orders.url, autocommit=True) as conn:   # as the relay's own (tuple rows)
        _fill(conn, 5000)
        relay._housekeeping(conn)
    del relay   # its producer never connected: nothing to flush
    assert metrics.OUTBOX_BACKLOG.labels("orders")._value.get() == 1
    assert metrics.OUTBOX_OLDEST_AGE.labels("orders")._value.get() < 60   # the new row, not the set-aside one


def test_the_backlog_query_reads_the_pending_index_not_the_kept_rows(orders):
    with psycopg.connect(orders.url, autocommit=True) as conn:
        _fill(conn, 5000)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + PENDING_SQL).fetchall())
    assert "outbox_pending" in plan and "Seq Scan" not in plan, plan
