"""Writing a batch's events to the outbox, on a real, migrated database (no broker).

The relay sleeps on LISTEN outbox and publishes when a writer's transaction commits (its 1 s poll
is only a safety net). The wake-up is part of the outbox INSERT statement (it was a NOTIFY
statement of its own after it, one more per consumed batch): it must still arrive at the commit,
and only then."""
from __future__ import annotations

import psycopg

from runtime.outbox import OutboxRow, write_outbox


def _rows(n: int) -> list[OutboxRow]:
    return [OutboxRow(f"e-{i}", "OrderPlaced", f"o-{i}", b"{}", {"ce_type": "OrderPlaced"}) for i in range(n)]


def test_an_outbox_write_wakes_the_relay_when_it_commits_not_before(orders):
    with psycopg.connect(orders.url, autocommit=True) as relay, psycopg.connect(orders.url) as writer:
        relay.execute("LISTEN outbox")
        write_outbox(writer, _rows(3))
        assert list(relay.notifies(timeout=0.3)) == []      # not committed: nothing to publish yet
        writer.commit()
        [wake] = list(relay.notifies(timeout=2, stop_after=1))
        assert wake.channel == "outbox"
        [(count,)] = relay.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchall()
        assert count == 3


def test_a_batch_whose_events_are_all_known_already_writes_nothing_new(orders):
    with psycopg.connect(orders.url) as writer:
        write_outbox(writer, _rows(2))
        writer.commit()
        write_outbox(writer, _rows(2))   # a re-run of the same batch: ON CONFLICT DO NOTHING
        writer.commit()
        [(count,)] = writer.execute("SELECT count(*) FROM outbox").fetchall()
    assert count == 2
