"""Benchmark (not a test), issue 11: the email sender alone, draining a queue of N emails.

Queues N rendered order confirmations straight into the notifications database (as its
OrderConfirmed handler would), then starts the notifications service with only its sender
worker and times until every row is `sent`, against the embedded stack's SMTP sink (aiosmtpd,
writing a Maildir) and PostgreSQL. Prints emails/s and CPU ms per email for the sender thread,
the SMTP sink's thread and PostgreSQL. The sender runs in this process, beside the SMTP sink's
thread (they share a GIL, unlike the stack, where notifications is a process of its own): the
figures are for comparing changes to the sender, run back to back, not for the stack's rate.

    .venv/bin/python bench/sender_bench.py [N] [--batch B] [--sessions S]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measure import load_average, machine, read_stat, tree_cpu_s  # noqa: E402
from runtime import db  # noqa: E402
from runtime.clock import WallClock  # noqa: E402
from runtime.config import Settings  # noqa: E402
from runtime.embedded import EmbeddedStack  # noqa: E402
from runtime.service import Service, ServiceProcess  # noqa: E402
from schemas import Delivery, Money, OrderConfirmed, OrderLine  # noqa: E402
from services.notifications import store  # noqa: E402
from services.notifications.handlers import notification_id  # noqa: E402
from services.notifications.sender import SenderWorker  # noqa: E402
from services.notifications.service import SERVICE as NOTIFICATIONS  # noqa: E402
from services.notifications.templates import render  # noqa: E402


def confirmation(i: int) -> OrderConfirmed:
    eur = lambda a: Money(amount=Decimal(a), currency="EUR")  # noqa: E731
    return OrderConfirmed(
        order_id=f"bench-{i}", customer_id=f"c-{i % 50}", confirmation_number=f"SB-{i:08d}",
        lines=[OrderLine(sku="BULB-LED-9W", name="LED bulb 9 W", quantity=1000, unit_price=eur("1.85"))],
        total=eur("1850.00"), language="hr",
        delivery=Delivery(recipient="Ana Kovač", address_lines=["Ilica 1"], city="Zagreb", postal_code="10000",
                          country="HR", phone="+385 1 555", email=f"buyer{i}@example.hr"),
        confirmed_at=datetime.now(timezone.utc))


def queue_emails(url: str, n: int) -> None:
    now = datetime.now(timezone.utc)
    with psycopg.connect(url) as conn:
        for i in range(n):
            e = confirmation(i)
            email = render(e, "hr", extra={"time_zone": "Europe/Zagreb"})
            store.queue(conn, notification_id=notification_id(e.order_id, "order_confirmation"),
                        kind="order_confirmation", order_id=e.order_id, customer_id=e.customer_id,
                        recipient=e.delivery.email, language="hr", subject=email.subject,
                        body_text=email.text, body_html=email.html, now=now)


def thread_cpu_s(tid: int) -> float:
    st = read_stat(os.getpid(), tid)
    return st.cpu_s if st else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=None, help="Settings.email_batch_size (default: its default)")
    ap.add_argument("--sessions", type=int, default=None, help="Settings.email_sessions (default: its default)")
    args = ap.parse_args()
    stack = EmbeddedStack(Path(tempfile.mkdtemp(prefix="salesbus-sender-bench-"))).start()
    try:
        cfg = Settings(kafka_bootstrap=stack.broker.bootstrap, database_url=stack.postgres.url,
                       smtp_host="127.0.0.1", smtp_port=stack.mail.port)
        if args.batch:
            cfg = cfg.model_copy(update={"email_batch_size": args.batch})
        if args.sessions:
            cfg = cfg.model_copy(update={"email_sessions": args.sessions})
        url = cfg.database_for("notifications")
        db.migrate(url, NOTIFICATIONS.migrations)
        queue_emails(url, args.n)
        sender = SenderWorker()
        only_sender = Service("notifications", {}, NOTIFICATIONS.migrations, workers=[sender])
        pg_pid, smtp_tid = stack.postgres.server.get_pid(), stack.mail.controller._thread.native_id
        proc = ServiceProcess(only_sender, cfg, WallClock())
        cpu0 = {"PostgreSQL": tree_cpu_s(pg_pid)[0], "SMTP sink": thread_cpu_s(smtp_tid)}
        t0 = time.perf_counter()
        proc.start()
        sender_tid = next(t.native_id for t in proc.threads if t.name.endswith("sender"))
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM notifications WHERE status = 'pending'").fetchone()[0]:
                time.sleep(0.05)
            failed = conn.execute("SELECT count(*) FROM notifications WHERE status = 'failed'").fetchone()[0]
        elapsed = time.perf_counter() - t0
        cpu = {"sender (thread)": thread_cpu_s(sender_tid),
               "PostgreSQL": tree_cpu_s(pg_pid)[0] - cpu0["PostgreSQL"],
               "SMTP sink": thread_cpu_s(smtp_tid) - cpu0["SMTP sink"]}
        proc.stop()
        result = {"emails": args.n, "failed": failed, "batch": cfg.email_batch_size,
                  "sessions": cfg.email_sessions, "seconds": round(elapsed, 2),
                  "emails_per_s": round(args.n / elapsed, 1),
                  "cpu_ms_per_email": {k: round(1000 * v / args.n, 2) for k, v in cpu.items()},
                  "machine": machine() | {"load_average": load_average()}}
        print(f"{args.n} emails ({failed} failed), batch {cfg.email_batch_size}, {cfg.email_sessions} SMTP "
              f"session(s): {elapsed:.2f}s, "
              f"{args.n / elapsed:.0f} emails/s; CPU ms/email: "
              + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_email"].items()))
        print(f"machine: {result['machine']}")
        out = ROOT / ".salesbus" / "sender_bench.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
