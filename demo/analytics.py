"""Demo flow: analysts tapping the bus.

The analytics app (faust-streaming, services/analytics) starts against the demo's broker under
its own app id, reads every business topic from the beginning and serves the figures: booked
revenue per SKU, the checkout funnel, order latencies, standing orders. Each figure is checked
against a recomputation from the records on the topics (ctx.records), at exactly the positions
the app says it has applied. Then the three commands an analyst types: follow, filter, export.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal
from fractions import Fraction

import httpx
from rich.table import Table

from demo.context import DemoContext
from runtime.auth import issue_key, key_id_of
from runtime.embedded import free_port
from runtime.tap import tap
from schemas import REGISTRY, parse_record
from schemas.envelope import InvalidRecord
from services.analytics.facts import TOPICS

STAGES = {"PaymentVerified": "payment_verified", "PaymentDeclined": "payment_declined",
          "OrderConfirmed": "confirmed", "OrderShipped": "shipped", "OrderCancelled": "cancelled"}


def start_analytics(ctx: DemoContext) -> tuple[subprocess.Popen, httpx.Client]:
    """The app, and a client holding an analyst key (the figures want one, as every service's data does)."""
    port = free_port()
    env = {**os.environ, **ctx.stack.env(), "SALESBUS_CLOCK_FILE": str(ctx.stack.data_dir / "clock.json"),
           "SALESBUS_API_KEYS_FILE": str(ctx.keys_file)}
    log = open(ctx.stack.data_dir / "logs" / "analytics.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.analytics", "--broker", ctx.stack.broker.bootstrap,
                             "--web-port", str(port), "--app-id", "salesbus-analytics-demo",
                             "--data-dir", str(ctx.stack.data_dir / "analytics"), "--loglevel", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    key = issue_key(ctx.keys_file, "analyst", "demo-analyst")
    return proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                              timeout=10)


def get(api: httpx.Client, path: str, **params) -> dict | None:
    try:
        r = api.get(path, params=params)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def topic_ends(ctx: DemoContext) -> dict[str, dict[str, int]]:
    ends: dict[str, dict[str, int]] = defaultdict(dict)
    for rec in tap(ctx.cfg.kafka_common(), list(TOPICS), follow=False, idle_exit_s=2.0):
        ends[rec.topic][str(rec.partition)] = rec.offset + 1
    return dict(ends)


def covers(positions: dict, ends: dict) -> bool:
    return all(positions.get(t, {}).get(p, 0) >= end for t, parts in ends.items() for p, end in parts.items())


def consistent_snapshot(ctx: DemoContext, api: httpx.Client) -> tuple[dict, list[dict]] | None:
    """The figures and the records they were computed from: retried until no record arrived
    between reading the figures and reading the records."""
    for _ in range(5):
        ends = topic_ends(ctx)
        if not ctx.wait_for(lambda: covers((get(api, "/analytics/status") or {}).get("as_of", {}).get("positions", {}),
                                           ends), timeout=90, what="analytics to catch up with the demo's traffic"):
            return None
        figures = {"revenue": get(api, "/analytics/revenue", window="day"),
                   "funnel": get(api, "/analytics/funnel", window="day"),
                   "latency": get(api, "/analytics/latency"),
                   "standing": get(api, "/analytics/standing-orders")}
        seen = {json.dumps(f["as_of"]["positions"], sort_keys=True) for f in figures.values() if f}
        records = ctx.records(list(TOPICS))
        if len(seen) == 1 and all(figures.values()) and topic_ends(ctx) == figures["revenue"]["as_of"]["positions"]:
            return figures, records
    ctx.check(False, "analytics: no quiet moment to compare figures with the topics")
    return None


def oracle(records: list[dict]) -> dict:
    """Revenue per SKU, funnel totals and latency percentiles, recomputed from the records."""
    orders: dict[str, dict] = defaultdict(dict)
    logged: dict[str, dict] = defaultdict(dict)   # order -> type -> record timestamp (s)
    for r in records:
        try:
            ce, ev = parse_record(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}).encode(), REGISTRY)
        except InvalidRecord:
            continue
        if ce.type == r["_topic"] and hasattr(ev, "order_id"):
            orders[ev.order_id].setdefault(ce.type, ev)
            logged[ev.order_id].setdefault(ce.type, r["_timestamp_ms"] / 1000)
    revenue: dict = defaultdict(lambda: [set(), 0, Decimal(0)])
    for oid, o in orders.items():
        for line in getattr(o.get("OrderConfirmed"), "lines", []):
            cell = revenue[(line.sku, line.unit_price.currency)]
            cell[0].add(oid)
            cell[1] += line.quantity
            cell[2] += line.unit_price.amount * line.quantity
    placed = [o for o in orders.values() if "OrderPlaced" in o]
    stages = Counter(stage for o in placed for etype, stage in STAGES.items() if etype in o)
    reasons = Counter(o["PaymentDeclined"].reason_code for o in placed if "PaymentDeclined" in o)

    def pct(values, p):
        return sorted(values)[math.ceil(Fraction(p, 100) * len(values)) - 1] if values else None
    spans = {"placed_to_confirmed": [(o["OrderConfirmed"].confirmed_at - o["OrderPlaced"].placed_at).total_seconds()
                                     for o in placed if "OrderConfirmed" in o],
             "confirmed_to_shipped": [(o["OrderShipped"].shipped_at - o["OrderConfirmed"].confirmed_at).total_seconds()
                                      for o in orders.values() if "OrderConfirmed" in o and "OrderShipped" in o]}
    wall = {"placed_to_confirmed": [round(t["OrderConfirmed"] - t["OrderPlaced"], 3) for o, t in logged.items()
                                    if "OrderPlaced" in orders[o] and "OrderConfirmed" in t],
            "confirmed_to_shipped": [round(t["OrderShipped"] - t["OrderConfirmed"], 3) for t in logged.values()
                                     if "OrderConfirmed" in t and "OrderShipped" in t]}
    return {"revenue": {k: (len(v[0]), v[1], format(v[2], "f")) for k, v in revenue.items()},
            "funnel": {"placed": len(placed), **{s: stages[s] for s in STAGES.values()},
                       "declined_by_reason": dict(reasons)},
            "latency": {name: {"count": len(v), **{f"p{p}": pct(v, p) for p in (50, 95, 99)}}
                        for name, v in spans.items()},
            "processing": {name: {"count": len(v), **{f"p{p}": pct(v, p) for p in (50, 95, 99)}}
                           for name, v in wall.items()}}


def show_and_check(ctx: DemoContext, figures: dict, expected: dict) -> None:
    console = ctx.console
    table = Table("SKU", "currency", "orders", "units", "revenue booked", title="revenue per SKU (confirmed orders)")
    served = {}
    for row in figures["revenue"]["by_sku"]:
        served[(row["sku"], row["currency"])] = (row["orders"], row["units"], row["revenue"])
        table.add_row(row["sku"], row["currency"], str(row["orders"]), str(row["units"]), row["revenue"])
    console.print(table)
    ctx.check(served == expected["revenue"], f"revenue per SKU equals the recomputation ({served} vs {expected['revenue']})")

    total = figures["funnel"]["total"]
    funnel = Table("stage", "orders", "rate of placed", title="checkout funnel (orders placed, all days)")
    funnel.add_row("placed", str(total["placed"]), "")
    for stage, rate in total["rates"].items():
        funnel.add_row(stage.replace("_", " "), str(total[stage]), rate or "—")
    for reason, n in total["declined_by_reason"].items():
        funnel.add_row(f"  declined: {reason}", str(n), "")
    console.print(funnel)
    mine = {k: total[k] for k in expected["funnel"]}
    ctx.check(mine == expected["funnel"], f"funnel equals the recomputation ({mine} vs {expected['funnel']})")

    for key, served_lat, title in (
            ("processing", figures["latency"]["processing"], "order latency, wall clock (Kafka record timestamps of "
                                                              "each order's own events: how long the system took)"),
            ("latency", figures["latency"], "order latency, business clock (each order's own event times; the "
                                            "demo moves this clock, so orders in flight across a move span it)")):
        lat = Table("span", "orders", "p50 s", "p95 s", "p99 s", title=title)
        for span in ("placed_to_confirmed", "confirmed_to_shipped"):
            d = served_lat[span]
            lat.add_row(span.replace("_", " "), str(d["count"]), *(f"{d[p]:.3f}" if d[p] is not None else "—"
                                                                     for p in ("p50", "p95", "p99")))
            ctx.check({k: d[k] for k in expected[key][span]} == expected[key][span],
                      f"{span} percentiles ({key}) equal the recomputation")
        console.print(lat)

    so = figures["standing"]
    console.print(f"standing orders: {so['active']} active ({', '.join(f'{k} {v}' for k, v in so['by_status'].items())}); "
                  "expected units: " + "; ".join(
                      f"next {h} days " + (", ".join(f"{sku} {u}" for sku, u in v["units"].items()) or "none")
                      for h, v in so["horizons"].items()))


def analyst_commands(ctx: DemoContext) -> None:
    out = ctx.stack.data_dir / "export" / "orders.parquet"
    commands = [
        ("follow", ["tap", "OrderPlaced", "OrderConfirmed", "OrderShipped", "--no-follow"]),
        ("filter", ["tap", "OrderPlaced", "--where", "payment.mode=account", "--where", "lines.sku=BULB-LED-9W",
                    "--since", "30d", "--json", "--no-follow"]),
        ("export", ["export", "OrderPlaced", "OrderConfirmed", "--since", "30d", "--out", str(out)]),
    ]
    env = {**os.environ, **ctx.stack.env(), "COLUMNS": "200"}
    ctx.console.print("\n[bold]the analyst's three commands[/bold] (follow runs with --no-follow here so the demo ends)")
    for what, args in commands:
        done = subprocess.run([sys.executable, "-m", "runtime.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        lines = done.stdout.splitlines()
        shown = " ".join(a if " " not in a else repr(a) for a in args).replace(str(ctx.stack.data_dir), "$DATA")
        ctx.console.print(f"  {what:<6} $ salesbus {shown}\n         → exit {done.returncode}, {len(lines)} lines of output")
        for line in lines[:2] if what != "follow" else lines[:1]:
            ctx.console.print(f"           {line[:110]}", markup=False, highlight=False)
        ctx.check(done.returncode == 0 and len(lines) > 0, f"`salesbus {args[0]}` ({what}) works: {done.stderr[-300:]}")
    import pandas as pd
    placed = pd.read_parquet(out.with_name("orders-OrderPlaced.lines.parquet"))
    placed_at = pd.read_parquet(out.with_name("orders-OrderPlaced.parquet"))["placed_at"]
    ctx.console.print(f"  pandas: orders-OrderPlaced.lines.parquet has {len(placed)} rows; quantity "
                      f"{placed['quantity'].dtype}, unit_price.amount {type(placed['unit_price.amount'].iloc[0]).__name__}; "
                      f"placed_at {placed_at.dtype}", markup=False, highlight=False)
    ctx.check(str(placed["quantity"].dtype) == "int64" and str(placed_at.dtype) == "datetime64[us, UTC]",
              "the export opens in pandas typed")


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]4. Analysts tapping the bus")
    proc, api = start_analytics(ctx)
    try:
        started = time.monotonic()
        if not ctx.wait_for(lambda: (get(api, "/analytics/status") or {}).get("ready"), timeout=90,
                            what="the analytics app to start (log: logs/analytics.log)"):
            return
        snapshot = consistent_snapshot(ctx, api)
        if snapshot is None:
            return
        figures, records = snapshot
        applied = sum(sum(p.values()) for p in figures["revenue"]["as_of"]["positions"].values())
        ctx.console.print(f"analytics (faust) at {api.base_url} (analyst key required; the demo's: "
                          f"{key_id_of(api.headers['Authorization'].removeprefix('Bearer '))}): {applied} records applied from {len(TOPICS)} topics in "
                          f"{time.monotonic() - started:.1f}s; endpoints /analytics/revenue, /funnel, /latency, "
                          f"/standing-orders, /customers/{{id}}, /metrics")
        show_and_check(ctx, figures, oracle(records))
        analyst_commands(ctx)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
