"""Analytics against the real broker: what the faust app serves equals an independent
recomputation from the topics (the Oracle below shares no code with
services/analytics/aggregates.py or facts.py), at exactly the positions the app reports in
``as_of``; the tables survive a restart (changelog recovery, no double counting); unusable
records go to <topic>.DLQ."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from runtime.auth import issue_key, key_id_of, revoke_by_id
from runtime.embedded import free_port
from runtime.tap import tap
from schemas import (REGISTRY, CreditNoteIssued, InvoiceIssued, OrderCancelled, SupplierAccountChanged, OrderConfirmed, OrderPlaced, OrderShipped, PaymentDeclined,
                     PaymentVerified, RecurringOrderDue, StandingOrderChanged, envelope, parse_record, to_record)
from schemas.envelope import InvalidRecord
from services.scheduler.recurrence import Recurrence
from tests.conftest import wait_until

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPICS = ["OrderPlaced", "PaymentVerified", "PaymentDeclined", "OrderConfirmed", "OrderShipped", "OrderCancelled",
          "StandingOrderChanged", "RecurringOrderDue", "InvoiceIssued", "CreditNoteIssued", "SupplierAccountChanged"]
DELIVERY = {"recipient": "Goods in", "address_lines": ["Ul. Prosta 1"], "city": "Kraków", "postal_code": "30-001",
            "country": "PL", "phone": "+48 12 000 00", "email": "buyer@example.pl"}


# --- the app under test, in its own process, group, changelogs and data dir ---------------------------

class AnalyticsProcess:
    def __init__(self, cfg, data_dir):
        self.cfg, self.data_dir = cfg, data_dir
        self.app_id = f"analytics-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        # the figures want an analyst (or operator) key, checked against the keys file as every service does
        self.keys_file = data_dir / "api_keys.json"
        self.analyst_key = issue_key(self.keys_file, "analyst", "ana")

    def start(self) -> None:
        log = open(self.data_dir / "analytics.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.analytics", "--broker", self.cfg.kafka_bootstrap, "--web-port",
             str(self.port), "--app-id", self.app_id, "--data-dir", str(self.data_dir), "--loglevel", "warning"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "SALESBUS_API_KEYS_FILE": str(self.keys_file)})
        wait_until(self._ready, timeout=90, interval=0.5, message=f"analytics ready (log {self.data_dir})")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"analytics exited (log in {self.data_dir})"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def call(self, path: str, key: str | None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", params=params, headers=headers, timeout=30)

    def get(self, path: str, **params) -> dict:
        assert self.proc.poll() is None, f"analytics crashed (log in {self.data_dir})"
        r = self.call(path, self.analyst_key, **params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def analytics(cfg, stack, tmp_path_factory):
    app = AnalyticsProcess(cfg, tmp_path_factory.mktemp("analytics"))
    app.start()
    yield app
    app.stop()


def read_topics(cfg) -> list:
    return list(tap(cfg.kafka_common(), TOPICS, follow=False, idle_exit_s=3.0))


def ends(records) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for r in records:
        out[r.topic][str(r.partition)] = max(out[r.topic].get(str(r.partition), 0), r.offset + 1)
    return out


def caught_up(app, cfg) -> dict:
    """Wait until the app has applied every record now on the topics; returns those ends."""
    target = ends(read_topics(cfg))

    def done():
        pos = app.get("/analytics/status")["as_of"]["positions"]
        return all(pos.get(t, {}).get(p, 0) >= end for t, parts in target.items() for p, end in parts.items())
    wait_until(done, timeout=120, interval=0.5, message="analytics to catch up with the topics")
    return target


def records_upto(cfg, positions: dict[str, dict[str, int]]) -> list:
    """Exactly the records below the app's positions (re-read until none is missing)."""
    def complete():
        recs = [r for r in read_topics(cfg) if r.offset < positions.get(r.topic, {}).get(str(r.partition), 0)]
        return recs if len(recs) == sum(sum(p.values()) for p in positions.values()) else None
    return wait_until(complete, timeout=60, interval=1, message="every record the app applied to be read back")


# --- the oracle: the figures recomputed from the records, written without aggregates.py ----------------

def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def day_of(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{at.microsecond:06d}" if at.microsecond else "") + "Z"


def nearest_rank(values: list[float], p: int):
    if not values:
        return None
    values = sorted(values)
    return values[math.ceil(Fraction(p, 100) * len(values)) - 1]


def four_places(part: int, whole: int):
    if not whole:
        return None
    r = round(Fraction(part, whole), 4)  # round() on a Fraction rounds half to even
    return str((Decimal(r.numerator) / Decimal(r.denominator)).quantize(Decimal("0.0001")))


class Oracle:
    STAGE = {"PaymentVerified": "payment_verified", "PaymentDeclined": "payment_declined",
             "OrderConfirmed": "confirmed", "OrderShipped": "shipped", "OrderCancelled": "cancelled"}

    def __init__(self, records):
        self.orders: dict[str, dict] = defaultdict(dict)
        self.standing: dict[str, StandingOrderChanged] = {}
        self.due: set = set()
        self.logged: dict[str, dict] = defaultdict(dict)  # order -> type -> record timestamp (s)
        self.invoices: dict[str, InvoiceIssued] = {}
        self.credit_notes: dict[str, CreditNoteIssued] = {}
        self.accounts: dict[str, tuple] = {}   # customer -> ((changed_at, offset), latest change)
        for rec in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            try:
                ce, ev = parse_record(rec.value, REGISTRY)
            except InvalidRecord:
                continue
            if ce.type != rec.topic:
                continue
            if isinstance(ev, StandingOrderChanged):
                try:
                    self.schedule(ev)
                except (ValueError, KeyError):
                    continue  # a schedule that cannot be projected is dead-lettered
                old = self.standing.get(ev.standing_order_id)
                if old is None or ev.changed_at >= old.changed_at:
                    self.standing[ev.standing_order_id] = ev
            elif isinstance(ev, RecurringOrderDue):
                self.due.add((ev.standing_order_id, ev.occurrence))
            elif isinstance(ev, InvoiceIssued):
                self.invoices.setdefault(ev.invoice_number, ev)
            elif isinstance(ev, CreditNoteIssued):
                self.credit_notes.setdefault(ev.credit_note_number, ev)
            elif isinstance(ev, SupplierAccountChanged):
                old = self.accounts.get(ev.customer_id)
                if old is None or (ev.changed_at, rec.offset) > old[0]:
                    self.accounts[ev.customer_id] = ((ev.changed_at, rec.offset), ev)
            else:
                self.orders[ev.order_id].setdefault(ce.type, ev)
                self.logged[ev.order_id].setdefault(ce.type, round(rec.timestamp_ms / 1000, 3))

    @staticmethod
    def schedule(ev: StandingOrderChanged) -> Recurrence:
        return Recurrence(ev.start_date, ev.interval.every, ev.interval.unit, ev.time_zone, ev.end_date,
                          ev.max_occurrences)

    def revenue(self, window, since=None, until=None):
        trunc = hour_of if window == "hour" else day_of
        cells, skus, cur_orders, cur_rev = {}, {}, defaultdict(set), defaultdict(Decimal)
        for oid, o in self.orders.items():
            c = o.get("OrderConfirmed")
            if c is None or (since and c.confirmed_at < since) or (until and c.confirmed_at >= until):
                continue
            for ln in c.lines:
                amount, cur = ln.unit_price.amount * ln.quantity, ln.unit_price.currency
                for table, key in ((cells, (z(trunc(c.confirmed_at)), ln.sku, cur)), (skus, (ln.sku, cur))):
                    orders, units, total = table.get(key, (set(), 0, Decimal(0)))
                    table[key] = (orders | {oid}, units + ln.quantity, total + amount)
                cur_orders[cur].add(oid)
                cur_rev[cur] += amount
        return {"window": window,
                "rows": {k: (len(v[0]), v[1], format(v[2], "f")) for k, v in cells.items()},
                "by_sku": {k: (len(v[0]), v[1], format(v[2], "f")) for k, v in skus.items()},
                "by_currency": {c: {"orders": len(cur_orders[c]), "revenue": format(cur_rev[c], "f")} for c in cur_rev}}

    def funnel(self, window, since=None, until=None):
        trunc = hour_of if window == "hour" else day_of
        cohorts: dict = defaultdict(lambda: (Counter(), Counter()))
        for o in self.orders.values():
            p = o.get("OrderPlaced")
            if p is None or (since and p.placed_at < since) or (until and p.placed_at >= until):
                continue
            for key in (z(trunc(p.placed_at)), "total"):
                stages, reasons = cohorts[key]
                stages["placed"] += 1
                for etype, stage in self.STAGE.items():
                    stages[stage] += etype in o
                if "PaymentDeclined" in o:
                    reasons[o["PaymentDeclined"].reason_code] += 1
        out = {}
        for key, (stages, reasons) in cohorts.items():
            out[key] = {"placed": stages["placed"], **{s: stages[s] for s in self.STAGE.values()},
                        "declined_by_reason": dict(reasons),
                        "rates": {s: four_places(stages[s], stages["placed"]) for s in self.STAGE.values()}}
        return out

    def latency(self, since=None, until=None):
        def within(at):
            return not ((since and at < since) or (until and at >= until))
        to_confirm = [(o["OrderConfirmed"].confirmed_at - o["OrderPlaced"].placed_at).total_seconds()
                      for o in self.orders.values()
                      if "OrderPlaced" in o and "OrderConfirmed" in o and within(o["OrderPlaced"].placed_at)]
        to_ship = [(o["OrderShipped"].shipped_at - o["OrderConfirmed"].confirmed_at).total_seconds()
                   for o in self.orders.values()
                   if "OrderConfirmed" in o and "OrderShipped" in o and within(o["OrderConfirmed"].confirmed_at)]
        logged = self.logged
        wall_confirm = [round(logged[i]["OrderConfirmed"] - logged[i]["OrderPlaced"], 3) for i, o in self.orders.items()
                        if "OrderPlaced" in o and "OrderConfirmed" in o and within(o["OrderPlaced"].placed_at)]
        wall_ship = [round(logged[i]["OrderShipped"] - logged[i]["OrderConfirmed"], 3) for i, o in self.orders.items()
                     if "OrderConfirmed" in o and "OrderShipped" in o and within(o["OrderConfirmed"].confirmed_at)]

        def dist(v):
            return {"count": len(v), "p50": nearest_rank(v, 50), "p95": nearest_rank(v, 95),
                    "p99": nearest_rank(v, 99), "max": max(v) if v else None}
        return {"placed_to_confirmed": dist(to_confirm), "confirmed_to_shipped": dist(to_ship),
                "processing": {"placed_to_confirmed": dist(wall_confirm), "confirmed_to_shipped": dist(wall_ship)}}

    def standing_orders(self, at: datetime):
        status = Counter(ev.status for ev in self.standing.values())
        horizons = {h: [0, Counter()] for h in (30, 60, 90)}
        for ev in self.standing.values():
            if ev.status != "active":
                continue
            rec, n = self.schedule(ev), 1
            while n <= rec.last_n and (when := rec.occurrence_at(n)) <= at + timedelta(days=90):
                if when > at and n not in ev.skip_occurrences:
                    for h, acc in horizons.items():
                        if when <= at + timedelta(days=h):
                            acc[0] += 1
                            for ln in ev.lines:
                                acc[1][ln.sku] += ln.quantity
                n += 1
        return {"at": z(at), "active": status["active"], "by_status": dict(status),
                "occurrences_due_so_far": len(self.due),
                "horizons": {str(h): {"occurrences": n, "units": dict(u)} for h, (n, u) in horizons.items()}}

    def customer(self, customer_id):
        mine = sorted((o["OrderPlaced"].placed_at, oid) for oid, o in self.orders.items()
                      if "OrderPlaced" in o and o["OrderPlaced"].customer_id == customer_id)
        if not mine:
            return None
        gaps = sorted((b[0] - a[0]).total_seconds() for a, b in zip(mine, mine[1:]))
        mid = len(gaps) // 2
        median = None if not gaps else gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
        revenue = defaultdict(Decimal)
        for _, oid in mine:
            for ln in getattr(self.orders[oid].get("OrderConfirmed"), "lines", []):
                revenue[ln.unit_price.currency] += ln.unit_price.amount * ln.quantity
        return {"customer_id": customer_id, "orders_placed": len(mine),
                "orders_confirmed": sum("OrderConfirmed" in self.orders[oid] for _, oid in mine),
                "first_order_at": z(mine[0][0]), "last_order_at": z(mine[-1][0]), "median_interval_seconds": median,
                "next_order_expected_at": z(mine[-1][0] + timedelta(seconds=median)) if gaps else None,
                "revenue": {c: format(v, "f") for c, v in revenue.items()}}

    def receivables(self, at: datetime, days: int):
        zero = Decimal("0.00")
        cur = defaultdict(lambda: {"outstanding": zero, "unapplied_credit": zero, "owing": 0, "held": 0,
                                   "invoiced": zero, "credited": zero})
        for _, ev in self.accounts.values():
            c = cur[ev.currency]
            c["outstanding"] += ev.open_balance
            c["unapplied_credit"] += ev.unapplied_credit or 0
            c["owing"] += 1 if ev.open_balance > 0 else 0
            c["held"] += 1 if ev.on_hold else 0
        start = at - timedelta(days=days)
        for inv in self.invoices.values():
            if start < inv.issued_at <= at:
                cur[inv.total.currency]["invoiced"] += inv.total.amount
        for cn in self.credit_notes.values():
            if start < cn.issued_at <= at:
                cur[cn.amount.currency]["credited"] += cn.amount.amount
        rows = []
        for currency in sorted(cur):
            c = cur[currency]
            sales = c["invoiced"] - c["credited"]
            dso = None
            if sales > 0:
                r = round(Fraction(c["outstanding"]) / Fraction(sales) * days, 1)   # half to even
                dso = str((Decimal(r.numerator) / Decimal(r.denominator)).quantize(Decimal("0.1")))
            cents = lambda v: format(Decimal(v).quantize(Decimal("0.01")), "f")  # noqa: E731
            rows.append({"currency": currency, "outstanding": cents(c["outstanding"]),
                         "unapplied_credit": cents(c["unapplied_credit"]), "accounts_owing": c["owing"],
                         "accounts_on_hold": c["held"], "invoiced": cents(c["invoiced"]),
                         "credited": cents(c["credited"]), "credit_sales": cents(sales), "dso_days": dso})
        return {"at": z(at), "days": days, "by_currency": rows}

    def facts(self):
        count = Counter(t for o in self.orders.values() for t in o)
        return {"placed": count["OrderPlaced"], "verified": count["PaymentVerified"],
                "declined": count["PaymentDeclined"], "confirmed": count["OrderConfirmed"],
                "shipped": count["OrderShipped"], "cancelled": count["OrderCancelled"],
                "standing": len(self.standing), "due": len(self.due), "invoiced": len(self.invoices),
                "credited": len(self.credit_notes), "accounts": len(self.accounts)}


def served_revenue(body):
    return {"window": body["window"],
            "rows": {(r["window_start"], r["sku"], r["currency"]): (r["orders"], r["units"], r["revenue"])
                     for r in body["rows"]},
            "by_sku": {(r["sku"], r["currency"]): (r["orders"], r["units"], r["revenue"]) for r in body["by_sku"]},
            "by_currency": body["by_currency"]}


def served_funnel(body):
    return {**{r["window_start"]: {k: v for k, v in r.items() if k != "window_start"} for r in body["rows"]},
            **({"total": body["total"]} if body["rows"] else {})}


def check_against_oracle(app, cfg, base: datetime) -> Oracle:
    """Every endpoint, each compared with the oracle over exactly the records its as_of names."""
    since, until = z(base), z(base + timedelta(days=4))
    at = base + timedelta(hours=12)
    queries = [("/analytics/revenue", {"window": "day"}), ("/analytics/revenue", {"window": "hour"}),
               ("/analytics/revenue", {"window": "hour", "since": since, "until": until}),
               ("/analytics/funnel", {"window": "hour"}), ("/analytics/funnel", {"window": "day", "since": since}),
               ("/analytics/latency", {}), ("/analytics/latency", {"since": since, "until": until}),
               ("/analytics/standing-orders", {"at": z(at)}), ("/analytics/customers", {}),
               ("/analytics/receivables", {"at": z(at), "days": "90"}),
               ("/analytics/receivables", {"at": z(base + timedelta(hours=2)), "days": "1"}),
               ("/analytics/status", {})]
    oracles: dict[str, Oracle] = {}
    for path, params in queries:
        body = app.get(path, **params)
        key = repr(body["as_of"]["positions"])
        if key not in oracles:
            oracles[key] = Oracle(records_upto(cfg, body["as_of"]["positions"]))
        oracle = oracles[key]
        s = datetime.fromisoformat(params["since"]) if "since" in params else None
        u = datetime.fromisoformat(params["until"]) if "until" in params else None
        what = f"{path} {params}"
        if path.endswith("revenue"):
            assert served_revenue(body) == oracle.revenue(params["window"], s, u), what
        elif path.endswith("funnel"):
            assert served_funnel(body) == oracle.funnel(params["window"], s, u), what
        elif path.endswith("latency"):
            expected = oracle.latency(s, u)
            assert {k: body[k] for k in ("placed_to_confirmed", "confirmed_to_shipped")} == \
                {k: expected[k] for k in ("placed_to_confirmed", "confirmed_to_shipped")}, what
            assert {k: body["processing"][k] for k in ("placed_to_confirmed", "confirmed_to_shipped")} == \
                expected["processing"], what
        elif path.endswith("standing-orders"):
            assert {k: v for k, v in body.items() if k != "as_of"} == oracle.standing_orders(at), what
        elif path.endswith("receivables"):
            expected = oracle.receivables(datetime.fromisoformat(params["at"]), int(params["days"]))
            assert {k: v for k, v in body.items() if k != "as_of"} == expected, what
        elif path.endswith("customers"):
            served = {c["customer_id"]: c for c in body["customers"]}
            assert served == {cid: oracle.customer(cid) for cid in served}, what
            placed_by = {o["OrderPlaced"].customer_id for o in oracle.orders.values() if "OrderPlaced" in o}
            assert set(served) == placed_by, what
        else:
            assert body["facts"] == oracle.facts(), what
    return next(iter(oracles.values()))


# --- a realistic week of trading, with the awkward cases --------------------------------------------------

def scenario(bus, cfg, u: str) -> datetime:
    """Publishes a week of orders and standing orders for unique id u; returns the base instant."""
    base = datetime(2031, 1, 6, 8, tzinfo=UTC) + timedelta(days=7 * (int(u[:6], 16) % 500))
    U = u.upper()
    bulb, cable, drill = f"AN-{U}-BULB", f"AN-{U}-CABLE", f"AN-{U}-DRILL"
    price = {("EUR", bulb): "2.50", ("EUR", cable): "12.00", ("EUR", drill): "89.00",
             ("PLN", bulb): "10.40", ("PLN", cable): "49.90"}

    def placed(n, customer, at, lines, currency="EUR"):
        items = [{"sku": s, "name": s.rsplit("-", 1)[1].title(), "quantity": q,
                  "unit_price": {"amount": price[(currency, s)], "currency": currency}} for s, q in lines]
        total = sum(Decimal(i["unit_price"]["amount"]) * i["quantity"] for i in items)
        return OrderPlaced.model_validate({
            "order_id": f"o-{u}-{n}", "customer_id": f"c-{u}-{customer}", "lines": items,
            "total": {"amount": format(total, "f"), "currency": currency}, "delivery": DELIVERY,
            "payment": {"mode": "account"}, "placed_at": at, "channel": "web"})

    def verified(o, after):
        return PaymentVerified(order_id=o.order_id, customer_id=o.customer_id, amount=o.total, method="account",
                               charge_reference=f"led-{o.order_id}", verified_at=o.placed_at + after)

    def declined(o, after, reason):
        return PaymentDeclined(order_id=o.order_id, customer_id=o.customer_id, method="account", reason_code=reason,
                               message="declined", declined_at=o.placed_at + after)

    def confirmed(o, after):
        return OrderConfirmed(order_id=o.order_id, customer_id=o.customer_id, confirmation_number=f"SB-{o.order_id}",
                              lines=o.lines, total=o.total, delivery=o.delivery, confirmed_at=o.placed_at + after)

    def shipped(o, after):
        return OrderShipped(order_id=o.order_id, customer_id=o.customer_id, carrier="DPD", tracking_number="T1",
                            distribution_centre="DC-KRK", shipped_at=o.placed_at + after)

    s, m, h, d = (lambda n: timedelta(seconds=n)), (lambda n: timedelta(minutes=n)), \
        (lambda n: timedelta(hours=n)), (lambda n: timedelta(days=n))
    o = {1: placed(1, 1, base, [(bulb, 10), (cable, 2)]),
         2: placed(2, 2, base + m(10), [(drill, 1)]),
         3: placed(3, 1, base + m(50), [(bulb, 4)]),
         4: placed(4, 3, base + h(1) + m(5), [(cable, 3)], "PLN"),
         5: placed(5, 2, base + h(1) + m(30), [(bulb, 20), (drill, 2)]),
         6: placed(6, 3, base + h(1) + m(40), [(cable, 1)], "PLN"),
         7: placed(7, 1, base + d(1) + h(2), [(bulb, 6)]),
         8: placed(8, 2, base + d(1) + h(2) + m(15), [(drill, 1), (cable, 5)]),
         9: placed(9, 1, base + d(2) + h(9), [(cable, 2)]),
         10: placed(10, 3, base + d(2) + h(9) + m(20), [(bulb, 8)], "PLN"),
         11: placed(11, 1, base + d(3) + h(1), [(bulb, 5)]),
         12: placed(12, 2, base + d(3) + h(1) + m(10), [(bulb, 1)])}
    # order 11 arrives backwards: shipped, confirmed and paid before analytics sees it placed
    for ev in (shipped(o[11], h(5)), confirmed(o[11], s(70)), verified(o[11], s(25))):
        bus.publish(ev)
    first_copy = {n: bus.publish(ev) for n, ev in o.items()}
    bus.publish(o[1], event_id=first_copy[1])  # a redelivery
    bus.publish(o[2].model_copy(update={"placed_at": base + d(1)}))  # the same order again, new event id
    for n, after in ((1, s(30)), (2, s(20)), (4, s(35)), (5, s(50)), (7, s(28)), (8, s(31)), (10, s(22))):
        bus.publish(verified(o[n], after))
    for n, reason in ((3, "insufficient_funds"), (6, "credit_limit_exceeded"), (12, "insufficient_funds")):
        bus.publish(declined(o[n], s(15), reason))
    for n, after in ((1, s(45)), (2, s(40)), (4, s(60)), (5, s(90)), (7, s(41)), (10, s(52))):
        conf_id = bus.publish(confirmed(o[n], after))
    bus.publish(confirmed(o[10], s(52)), event_id=conf_id)  # redelivered confirmation
    for n, after in ((1, h(2)), (2, h(3)), (4, d(1)), (7, h(26))):
        bus.publish(shipped(o[n], after))
    bus.publish(OrderCancelled(order_id=o[10].order_id, customer_id=o[10].customer_id, reason="customer request",
                               cancelled_at=o[10].placed_at + h(3)))
    # unusable records: not JSON; a float amount; an event on the wrong topic
    bus.publish_raw("OrderPlaced", b"\x00 not json", key=f"bad-{u}")
    key, value, headers = to_record(envelope(confirmed(o[9], s(30)), source="edi"))
    bus.publish_raw("OrderConfirmed", value.replace(b'"amount":"24.00"', b'"amount":24.0'), key=key, headers=headers)
    key, value, headers = to_record(envelope(verified(o[9], s(9)), source="edi"))
    bus.publish_raw("OrderShipped", value, key=key, headers=headers)

    # receivables: two invoices (one redelivered), a credit note, the accounts' changes (two in one instant)
    def invoice(n, customer, total, at):
        return InvoiceIssued.model_validate({
            "invoice_number": f"INV-2031-{int(u[:5], 16) % 900000 + n:06d}", "customer_id": f"c-{u}-{customer}",
            "order_id": f"o-{u}-{n}", "lines": [{"sku": bulb, "name": "Bulb", "quantity": 1,
                                                  "unit_price": {"amount": total, "currency": "EUR"}}],
            "tax_total": {"amount": "0.00", "currency": "EUR"}, "total": {"amount": total, "currency": "EUR"},
            "issue_date": at.date(), "due_date": at.date(), "time_zone": "UTC", "issued_at": at})

    def account(customer, balance, at, change, on_hold=False, unapplied="0.00"):
        return SupplierAccountChanged.model_validate({
            "customer_id": f"c-{u}-{customer}", "credit_limit": "5000.00", "open_balance": balance,
            "currency": "EUR", "payment_terms_days": 30, "status": "active", "changed_at": at,
            "unapplied_credit": unapplied, "on_hold": on_hold, "change": change})

    inv1 = invoice(1, 1, "40.00", base + h(1))
    bus.publish(inv1, event_id=bus.publish(inv1))
    bus.publish(invoice(2, 2, "89.00", base + d(1)))
    bus.publish(CreditNoteIssued.model_validate({
        "credit_note_number": f"CN-2031-{int(u[:5], 16) % 900000 + 1:06d}", "customer_id": f"c-{u}-2",
        "order_id": f"o-{u}-2", "amount": {"amount": "9.00", "currency": "EUR"}, "reason": "cancelled",
        "issue_date": (base + d(1) + h(1)).date(), "issued_at": base + d(1) + h(1)}))
    for ev in (account(1, "40.00", base + h(1), "invoice"), account(2, "89.00", base + d(1), "invoice"),
               account(2, "80.00", base + d(1) + h(1), "credit_note", on_hold=True),
               account(2, "0.00", base + d(2), "payment", on_hold=True, unapplied="1.00"),
               account(2, "0.00", base + d(2), "release", unapplied="1.00")):
        bus.publish(ev)

    def standing(n, customer, change, status, lines, every, unit, start, tz="Europe/Warsaw", changed=base, **kw):
        return StandingOrderChanged.model_validate({
            "standing_order_id": f"so-{u}-{n}", "customer_id": f"c-{u}-{customer}", "change": change,
            "status": status, "lines": [{"sku": sku, "quantity": q} for sku, q in lines], "delivery": DELIVERY,
            "payment": {"mode": "account"}, "interval": {"every": every, "unit": unit}, "start_date": start,
            "time_zone": tz, "changed_at": changed, **kw})
    day0 = base.date()
    # lz4-compressed batches, as the services' outbox relay writes them
    relay = Producer({**cfg.kafka_common(), "compression.type": "lz4", "linger.ms": 20})
    for ev in (standing(1, 1, "created", "active", [(bulb, 12), (cable, 1)], 1, "weeks", day0 + timedelta(1)),
               standing(1, 1, "lines_changed", "active", [(bulb, 15), (cable, 1)], 1, "weeks", day0 + timedelta(1),
                        changed=base + h(1)),
               standing(2, 2, "skipped", "active", [(drill, 1)], 1, "months", day0 + timedelta(3), tz="UTC",
                        max_occurrences=3, skip_occurrences=[2]),
               standing(3, 3, "paused", "paused", [(cable, 4)], 10, "days", day0),
               standing(4, 3, "cancelled", "cancelled", [(bulb, 2)], 2, "weeks", day0),
               RecurringOrderDue(standing_order_id=f"so-{u}-1", occurrence=1, customer_id=f"c-{u}-1",
                                 due_at=base + d(1), lines=[{"sku": bulb, "quantity": 12}], delivery=DELIVERY,
                                 payment={"mode": "account"})):
        key, value, headers = to_record(envelope(ev, source="scheduler"))
        relay.produce(ev.event_type(), key=key, value=value, headers=list(headers.items()))
    relay.flush(10)
    return base


def committed(cfg, group: str) -> int:
    c = Consumer({**cfg.kafka_common(), "group.id": group})
    try:
        parts = [TopicPartition(t, p) for t in TOPICS for p in c.list_topics(t, timeout=10).topics[t].partitions]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


# --- the tests -------------------------------------------------------------------------------------------

def test_served_figures_equal_an_independent_recomputation_from_the_topics(analytics, cfg, bus, unique):
    base = scenario(bus, cfg, unique)
    caught_up(analytics, cfg)
    oracle = check_against_oracle(analytics, cfg, base)

    # and a few figures worked out by hand, so a mistake shared by app and oracle still shows
    U = unique.upper()
    revenue = {(r["window_start"], r["sku"], r["currency"]): r for r in
               analytics.get("/analytics/revenue", window="day", since=z(base), until=z(base + timedelta(days=4)))["rows"]}
    day = z(base.replace(hour=0))
    assert (revenue[(day, f"AN-{U}-BULB", "EUR")]["revenue"], revenue[(day, f"AN-{U}-BULB", "EUR")]["units"]) == ("75.00", 30)
    assert revenue[(z(base.replace(hour=0) + timedelta(days=2)), f"AN-{U}-BULB", "PLN")]["revenue"] == "83.20"
    assert revenue[(z(base.replace(hour=0) + timedelta(days=3)), f"AN-{U}-BULB", "EUR")]["revenue"] == "12.50"
    first_hour = next(r for r in analytics.get("/analytics/funnel", window="hour", since=z(base),
                                               until=z(base + timedelta(hours=1)))["rows"])
    assert (first_hour["placed"], first_hour["payment_verified"], first_hour["payment_declined"],
            first_hour["shipped"]) == (3, 2, 1, 2)
    assert first_hour["declined_by_reason"] == {"insufficient_funds": 1}
    assert first_hour["rates"]["payment_verified"] == "0.6667"
    # receivables: sales in a 1-day period hold this scenario's invoices and credit note only (its week is its own)
    def eur_receivables(at):
        body = analytics.get("/analytics/receivables", at=z(at), days="1")
        return next(r for r in body["by_currency"] if r["currency"] == "EUR")
    first = eur_receivables(base + timedelta(hours=2))
    assert (first["invoiced"], first["credited"], first["credit_sales"]) == ("40.00", "0.00", "40.00")
    second = eur_receivables(base + timedelta(days=1, hours=2))   # the 89.00 invoice less its 9.00 credit note
    assert (second["invoiced"], second["credited"], second["credit_sales"]) == ("89.00", "9.00", "80.00")
    c1 = analytics.get(f"/analytics/customers/c-{unique}-1")
    assert (c1["orders_placed"], c1["median_interval_seconds"]) == (5, 74100.0)
    units = analytics.get("/analytics/standing-orders", at=z(base + timedelta(hours=12)))["horizons"]
    assert [units[h]["units"].get(f"AN-{U}-DRILL") for h in ("30", "60", "90")] == [1, 1, 2]
    assert oracle.orders[f"o-{unique}-11"].keys() == {"OrderPlaced", "PaymentVerified", "OrderConfirmed", "OrderShipped"}

    # the unusable records went to their dead-letter topics, named by this app's consumer group
    dead = [r for r in tap(cfg.kafka_common(), ["OrderPlaced.DLQ", "OrderConfirmed.DLQ", "OrderShipped.DLQ"],
                           follow=False, idle_exit_s=3.0)
            if r.headers.get("__connect.errors.consumer.group") == analytics.app_id
            and (r.key or "") in (f"bad-{unique}", f"o-{unique}-9")]
    assert sorted(r.topic for r in dead) == ["OrderConfirmed.DLQ", "OrderPlaced.DLQ", "OrderShipped.DLQ"]
    assert all(r.headers["__connect.errors.exception.class.name"] == "InvalidRecord" for r in dead)

    scraped = list(text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{analytics.port}/metrics",
                                                            timeout=10).text))
    units = {tuple(sorted(s.labels.items())): s.value for f in scraped if f.name == "salesbus_analytics_units_booked"
             for s in f.samples}
    assert units[(("currency", "PLN"), ("sku", f"AN-{U}-BULB"))] == 8.0
    outstanding = {s.labels["currency"]: s.value for f in scraped
                   if f.name == "salesbus_analytics_receivables_outstanding" for s in f.samples}
    assert outstanding["EUR"] == float(eur_receivables(base)["outstanding"])   # nothing published since


def test_the_figures_want_an_analyst_or_operator_key(analytics, unique):
    """Before: analytics answered anyone on the host (per-customer ordering cadence, revenue)."""
    for path in ("/analytics/revenue", "/analytics/customers", f"/analytics/customers/c-{unique}", "/analytics/status"):
        missing = analytics.call(path, None)
        assert missing.status_code == 401 and "missing API key" in missing.json()["error"], missing.text
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert analytics.call(path, "sb_anal_not-a-key").status_code == 401
        customer = issue_key(analytics.keys_file, "customer", f"c-{unique}")
        refused = analytics.call(path, customer)
        assert refused.status_code == 403 and "analyst or operator" in refused.json()["error"], refused.text
    assert analytics.call("/analytics/customers", analytics.analyst_key).status_code == 200
    operator = issue_key(analytics.keys_file, "operator", "olga")
    by_header = httpx.get(f"http://127.0.0.1:{analytics.port}/analytics/revenue", headers={"X-API-Key": operator},
                          timeout=30)
    assert by_header.status_code == 200, by_header.text
    # a revoked key is refused by the running app (it re-reads the keys file), saying so
    leaving = issue_key(analytics.keys_file, "analyst", f"leaving-{unique}")
    assert analytics.call("/analytics/revenue", leaving).status_code == 200
    revoke_by_id(analytics.keys_file, key_id_of(leaving), "left the team")
    gone = analytics.call("/analytics/revenue", leaving)
    assert gone.status_code == 401 and "was revoked" in gone.json()["error"] and "left the team" in gone.json()["error"]
    # probes and Prometheus need no key
    assert httpx.get(f"http://127.0.0.1:{analytics.port}/readyz", timeout=10).status_code == 200


def test_a_restart_recovers_the_tables_from_their_changelogs_without_double_counting(analytics, cfg, bus, unique):
    base = scenario(bus, cfg, unique)
    target = caught_up(analytics, cfg)
    before = analytics.get("/analytics/revenue", window="day", since=z(base), until=z(base + timedelta(days=4)))
    analytics.stop()
    total = sum(sum(p.values()) for p in target.values())
    assert committed(cfg, analytics.app_id) == total, "a clean stop commits every applied record"

    analytics.start()
    recovered = analytics.get("/analytics/status")["as_of"]["positions"]
    lost = {(t, p): (end, recovered.get(t, {}).get(p, 0)) for t, parts in before["as_of"]["positions"].items()
            for p, end in parts.items() if recovered.get(t, {}).get(p, 0) < end}
    assert not lost, f"changelog recovery stopped short of the tail (applied, recovered): {lost}"
    caught_up(analytics, cfg)
    after = analytics.get("/analytics/revenue", window="day", since=z(base), until=z(base + timedelta(days=4)))
    assert after["rows"] == before["rows"]
    # the facts came back from the changelogs, not from re-reading the topics from the start
    assert analytics.get("/analytics/status")["as_of"]["records"] < total
    check_against_oracle(analytics, cfg, base)
