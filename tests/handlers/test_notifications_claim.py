"""The sender's claim of its next batch on a real, migrated database (only its SQL runs).

What broke: the claim orders by (next_attempt_at, queued_at) and locks FOR UPDATE SKIP LOCKED, but
the only index was on next_attempt_at, so every claim read and sorted the whole backlog of pending
emails (5.4 ms a claim with 6,000 waiting; in a 6,000-order burst the notifications database's
costliest statement). An index in the claim's order lets the first unlocked rows end the scan."""
from __future__ import annotations

import psycopg

from services.notifications import store


def _backlog(conn, pending: int, sent: int) -> None:
    conn.execute(
        """INSERT INTO notifications (notification_id, kind, order_id, customer_id, recipient, language,
                                      subject, body_text, body_html, queued_at, status, sent_at)
           SELECT 'n-' || g, 'order_confirmation', 'o-' || g, 'c-1', 'buyer@example.com', 'en', 's', 't', 'h',
                  now() - interval '1 hour' + g * interval '1 ms',
                  CASE WHEN g <= %s THEN 'sent' ELSE 'pending' END,
                  CASE WHEN g <= %s THEN now() END
           FROM generate_series(1, %s) g""", (sent, sent, sent + pending))
    conn.execute("ANALYZE notifications")


def test_a_claim_reads_the_due_index_in_its_order_without_sorting_the_backlog(notifications):
    with psycopg.connect(notifications.url, autocommit=True) as conn:
        _backlog(conn, pending=6000, sent=2000)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + store.DUE_SQL, (10,)).fetchall())
    assert "notifications_due_in_order" in plan and "Sort" not in plan, plan


def test_a_claim_takes_the_oldest_due_emails_first(notifications):
    with psycopg.connect(notifications.url, autocommit=True) as conn:
        _backlog(conn, pending=50, sent=10)
        conn.execute("UPDATE notifications SET next_attempt_at = now() + interval '1 hour' WHERE notification_id = 'n-11'")
    with psycopg.connect(notifications.url) as conn:   # a transaction, as the sender's: the rows stay locked
        conn.row_factory = psycopg.rows.dict_row
        picked = [r["notification_id"] for r in store.due(conn, 3)]
    # all have next_attempt_at = now() of their insert; queued_at breaks the tie; n-11 waits for its retry
    assert picked == ["n-12", "n-13", "n-14"]
