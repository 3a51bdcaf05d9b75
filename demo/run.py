"""Start the stack and every service, run each flow, print the report, stop everything."""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import httpx
from rich.console import Console

from demo.context import DemoContext
from runtime.clock import FileClock
from runtime.embedded import EmbeddedStack
from runtime.supervisor import Supervisor

# Each flow is a module with `run(ctx: DemoContext) -> None`; they run in this order.
FLOWS = ["demo.checkout", "demo.standing_orders", "demo.crm", "demo.analytics", "demo.account_month", "demo.web"]


def wait_ready(ctx: DemoContext, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ctx.supervisor.children)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            try:
                if httpx.get(f"http://127.0.0.1:{ctx.supervisor.port(name, 'metrics')}/readyz", timeout=2).status_code == 200:
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        ctx.supervisor.check()
        time.sleep(0.3)
    if pending:
        raise RuntimeError(f"services not ready after {timeout}s: {', '.join(sorted(pending))} "
                           f"(logs in {ctx.stack.data_dir / 'logs'})")


def run_demo(data_dir: Path, console: Console) -> bool:
    started = time.monotonic()
    console.rule("[bold]salesbus demo")
    stack = EmbeddedStack(data_dir).start()
    keys_file, clock_file = stack.data_dir / "api_keys.json", stack.data_dir / "clock.json"
    keys_file.write_text("{}")
    clock = FileClock(clock_file)
    clock.advance(__import__("datetime").timedelta(0))
    sup = Supervisor(stack, extra_env={"SALESBUS_API_KEYS_FILE": str(keys_file), "SALESBUS_CLOCK_FILE": str(clock_file),
                                       "SALESBUS_DC_SHIP_DELAY_S": "1.5"}, report=console.print)
    ctx = DemoContext(stack, sup, console, clock, keys_file)
    try:
        console.print(f"embedded stack: Tansu broker {stack.broker.bootstrap}, PostgreSQL 18 ({stack.data_dir / 'pg'}), "
                      f"SMTP 127.0.0.1:{stack.mail.port}")
        console.print("simulated distribution centre: on (ships each confirmed order after 1.5s; "
                      "`salesbus up` has it off: the warehouse ships)")
        sup.start()
        wait_ready(ctx)
        console.print(f"services up: {', '.join(sup.children)} (each its own process, database and consumer group)")
        if "web" in sup.children:
            console.print(f"web pages: http://127.0.0.1:{sup.port('web')}/ (sign-in links go to {stack.mail.maildir})")
        for flow in FLOWS:
            try:
                module = importlib.import_module(flow)
            except ModuleNotFoundError:
                continue
            module.run(ctx)
            sup.check()
    finally:
        sup.stop()
        stack.stop()
    console.rule()
    if ctx.failures:
        console.print(f"[red]demo finished with {len(ctx.failures)} problem(s):[/red] " + "; ".join(ctx.failures))
    else:
        console.print(f"[green]demo finished: every check held[/green] ({time.monotonic() - started:.0f}s)")
    return not ctx.failures
