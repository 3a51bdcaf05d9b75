"""The figures analysts ask for, computed from the facts (services/analytics/facts.py).

Pure functions over mappings (table name -> {key: fact}); the faust app passes its tables, the
unit tests pass dicts, and the oracle tests recompute the same figures independently from the
topics. Definitions (the oracle follows them; docs/analysts.md repeats them):

* Windows are tumbling, UTC-aligned, in event time: an hour or a day of the business timestamp
  (``placed_at``, ``confirmed_at``), never of the moment analytics happened to read the event.
* Revenue is booked at confirmation (payment verified, confirmation number given): per window,
  SKU and currency, ``orders`` = distinct confirmed orders with that SKU, ``units`` = quantity,
  ``revenue`` = quantity x unit price, exact Decimal, shown as a decimal string.
* The funnel follows the orders placed in a window (a cohort): how many of them were then
  paid, declined (by reason), confirmed, shipped or cancelled, whenever that happened.
  Rates are stage / placed, 4 decimal places (half-even), as strings.
* Latencies are seconds between business timestamps: placed -> confirmed (cohort by
  ``placed_at``) and confirmed -> shipped (cohort by ``confirmed_at``); percentiles are
  nearest-rank (the smallest value with at least p% of the values at or below it).
* Standing orders: ``active`` counts the ones whose latest state is active; expected units per
  SKU over the next N days count each non-skipped occurrence in (at, at + N days].
* Receivables, per currency: ``outstanding`` is the sum of every supplier account's open balance
  in its latest SupplierAccountChanged (payments' own figure: it moves with invoices, payments
  received over HTTP or from a feed, and credit notes), ``unapplied_credit`` likewise.
  ``credit_sales`` over the last N days (default 90) = invoices issued (InvoiceIssued.total by
  ``issued_at``) - credit notes issued (CreditNoteIssued.amount by ``issued_at``) in (at - N days,
  at]; days sales outstanding = outstanding / credit_sales x N, 1 decimal place (half-even),
  none when there were no net credit sales.
* Customer cadence: every order placed (paid or not) shows intent to buy; the median interval
  is between consecutive orders by ``placed_at``.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Iterable, Mapping

from services.scheduler.recurrence import Recurrence

Facts = Mapping[str, Mapping[str, dict]]
WINDOWS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
HORIZONS_DAYS = (30, 60, 90)
PERCENTILES = (50, 95, 99)
STAGES = ("payment_verified", "payment_declined", "confirmed", "shipped", "cancelled")
_STAGE_TABLE = {"payment_verified": "verified", "payment_declined": "declined", "confirmed": "confirmed",
                "shipped": "shipped", "cancelled": "cancelled"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE = Decimal("0.0001")


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def window_start(at: datetime, size: timedelta) -> datetime:
    """Start of the tumbling window of ``size`` holding ``at`` (windows aligned on the Unix epoch)."""
    return at - (at - _EPOCH) % size


def in_range(at: datetime, since: datetime | None, until: datetime | None) -> bool:
    """since inclusive, until exclusive."""
    return (since is None or at >= since) and (until is None or at < until)


def rate(part: int, whole: int) -> str | None:
    return None if whole == 0 else str((Decimal(part) / Decimal(whole)).quantize(_RATE, ROUND_HALF_EVEN))


def percentile(ordered: list[float], p: int) -> float:
    """Nearest rank: the ceil(p/100 * n)-th smallest value (integer arithmetic, no float edge)."""
    rank = -(-p * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def distribution(values: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(values)
    out: dict[str, Any] = {"count": len(ordered)}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(ordered, p) if ordered else None
    out["max"] = ordered[-1] if ordered else None
    return out


# --- revenue ------------------------------------------------------------------------------

def revenue(facts: Facts, window: str = "day", since: datetime | None = None,
            until: datetime | None = None) -> dict[str, Any]:
    size = WINDOWS[window]
    cells: dict[tuple, list] = defaultdict(lambda: [set(), 0, Decimal(0)])
    by_sku: dict[tuple, list] = defaultdict(lambda: [set(), 0, Decimal(0)])
    by_currency: dict[str, list] = defaultdict(lambda: [set(), Decimal(0)])
    for order_id, fact in facts["confirmed"].items():
        at = ts(fact["at"])
        if not in_range(at, since, until):
            continue
        start = window_start(at, size)
        for sku, quantity, unit_amount, currency in fact["lines"]:
            amount = Decimal(unit_amount) * quantity
            for cell in (cells[(start, sku, currency)], by_sku[(sku, currency)]):
                cell[0].add(order_id)
                cell[1] += quantity
                cell[2] += amount
            by_currency[currency][0].add(order_id)
            by_currency[currency][1] += amount
    return {
        "window": window,
        "rows": [{"window_start": iso(start), "sku": sku, "currency": cur, "orders": len(c[0]), "units": c[1],
                  "revenue": format(c[2], "f")} for (start, sku, cur), c in sorted(cells.items())],
        "by_sku": [{"sku": sku, "currency": cur, "orders": len(c[0]), "units": c[1], "revenue": format(c[2], "f")}
                   for (sku, cur), c in sorted(by_sku.items())],
        "by_currency": {cur: {"orders": len(c[0]), "revenue": format(c[1], "f")}
                        for cur, c in sorted(by_currency.items())},
    }


# --- funnel -------------------------------------------------------------------------------

def _funnel_row(counts: Counter, reasons: Counter) -> dict[str, Any]:
    placed = counts["placed"]
    row: dict[str, Any] = {"placed": placed, **{s: counts[s] for s in STAGES}}
    row["declined_by_reason"] = dict(sorted(reasons.items()))
    row["rates"] = {s: rate(counts[s], placed) for s in STAGES}
    return row


def funnel(facts: Facts, window: str = "hour", since: datetime | None = None,
           until: datetime | None = None) -> dict[str, Any]:
    size = WINDOWS[window]
    counts: dict[datetime, Counter] = defaultdict(Counter)
    reasons: dict[datetime, Counter] = defaultdict(Counter)
    total, total_reasons = Counter(), Counter()
    for order_id, fact in facts["placed"].items():
        at = ts(fact["at"])
        if not in_range(at, since, until):
            continue
        start = window_start(at, size)
        reached = ["placed"] + [s for s in STAGES if order_id in facts[_STAGE_TABLE[s]]]
        counts[start].update(reached)
        total.update(reached)
        if order_id in facts["declined"]:
            reason = facts["declined"][order_id]["reason"]
            reasons[start][reason] += 1
            total_reasons[reason] += 1
    rows = [{"window_start": iso(start), **_funnel_row(counts[start], reasons[start])} for start in sorted(counts)]
    return {"window": window, "rows": rows, "total": _funnel_row(total, total_reasons)}


# --- latency ------------------------------------------------------------------------------

#: facts that carry ``logged_at``: their record's timestamp (seconds since the epoch)
LOGGED = ("placed", "confirmed", "shipped")
BUSINESS_CLOCK = ("business: each order's own event times (placed_at, confirmed_at, shipped_at); "
                  "the demo moves this clock, so an order in flight across a move spans the move")
WALL_CLOCK = "wall: when each of the order's events was published (Kafka record timestamps)"


def latency(facts: Facts, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Per order, between its own events: placed -> confirmed (cohort by placed_at) and
    confirmed -> shipped (cohort by confirmed_at), on two clocks: the business one (the top-level
    spans, what happened to the order in business time) and the wall one (``processing``: how
    long the system took). An order is counted once, from the first fact of each kind."""
    placed, confirmed, shipped = facts["placed"], facts["confirmed"], facts["shipped"]
    spans: dict[str, dict[str, list[float]]] = {c: {"placed_to_confirmed": [], "confirmed_to_shipped": []}
                                                for c in ("business", "wall")}

    def add(span: str, start: dict, end: dict) -> None:
        spans["business"][span].append((ts(end["at"]) - ts(start["at"])).total_seconds())
        if "logged_at" in start and "logged_at" in end:  # facts stored before this field have none
            spans["wall"][span].append(round(end["logged_at"] - start["logged_at"], 3))

    for order_id, fact in confirmed.items():
        if order_id in placed and in_range(ts(placed[order_id]["at"]), since, until):
            add("placed_to_confirmed", placed[order_id], fact)
        if order_id in shipped and in_range(ts(fact["at"]), since, until):
            add("confirmed_to_shipped", fact, shipped[order_id])
    return {"unit": "seconds", "clock": BUSINESS_CLOCK,
            **{span: distribution(v) for span, v in spans["business"].items()},
            "processing": {"clock": WALL_CLOCK, **{span: distribution(v) for span, v in spans["wall"].items()}}}


# --- standing orders ----------------------------------------------------------------------

def recurrence_of(fact: dict) -> Recurrence:
    return Recurrence(date.fromisoformat(fact["start_date"]), fact["every"], fact["unit"], fact["time_zone"],
                      date.fromisoformat(fact["end_date"]) if fact["end_date"] else None, fact["max_occurrences"])


def occurrences_between(fact: dict, after: datetime, until: datetime) -> list[datetime]:
    """Instants of the non-skipped occurrences in (after, until]."""
    rec, skipped = recurrence_of(fact), set(fact["skip"])
    n, out = rec.first_due_after(after), []
    while n is not None and n <= rec.last_n:
        at = rec.occurrence_at(n)
        if at > until:
            break
        if n not in skipped:
            out.append(at)
        n += 1
    return out


def standing_orders(facts: Facts, at: datetime, horizons: tuple[int, ...] = HORIZONS_DAYS) -> dict[str, Any]:
    by_status = Counter(f["status"] for f in facts["standing"].values())
    occurrences = {h: 0 for h in horizons}
    units: dict[int, Counter] = {h: Counter() for h in horizons}
    for fact in facts["standing"].values():
        if fact["status"] != "active":
            continue
        instants = occurrences_between(fact, at, at + timedelta(days=max(horizons)))
        for h in horizons:
            n = sum(1 for i in instants if i <= at + timedelta(days=h))
            occurrences[h] += n
            for sku, quantity in fact["lines"]:
                units[h][sku] += n * quantity
    return {"at": iso(at), "active": by_status.get("active", 0), "by_status": dict(sorted(by_status.items())),
            "occurrences_due_so_far": len(facts["due"]),
            "horizons": {str(h): {"occurrences": occurrences[h],
                                  "units": {sku: u for sku, u in sorted(units[h].items()) if u}}
                         for h in horizons}}


# --- customers ----------------------------------------------------------------------------

def _cadence(customer_id: str, orders: list[tuple[datetime, str]], confirmed: Mapping[str, dict]) -> dict[str, Any]:
    orders.sort()
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(orders, orders[1:])]
    median = statistics.median(gaps) if gaps else None
    booked: dict[str, Decimal] = defaultdict(Decimal)
    for _, order_id in orders:
        for _sku, quantity, unit_amount, currency in confirmed.get(order_id, {}).get("lines", ()):
            booked[currency] += Decimal(unit_amount) * quantity
    return {"customer_id": customer_id, "orders_placed": len(orders),
            "orders_confirmed": sum(1 for _, o in orders if o in confirmed),
            "first_order_at": iso(orders[0][0]), "last_order_at": iso(orders[-1][0]),
            "median_interval_seconds": median,
            "next_order_expected_at": iso(orders[-1][0] + timedelta(seconds=median)) if median is not None else None,
            "revenue": {cur: format(v, "f") for cur, v in sorted(booked.items())}}


def _orders_by_customer(facts: Facts) -> dict[str, list[tuple[datetime, str]]]:
    out: dict[str, list] = defaultdict(list)
    for order_id, fact in facts["placed"].items():
        out[fact["customer_id"]].append((ts(fact["at"]), order_id))
    return out


def customer(facts: Facts, customer_id: str) -> dict[str, Any] | None:
    orders = [(ts(f["at"]), oid) for oid, f in facts["placed"].items() if f["customer_id"] == customer_id]
    return _cadence(customer_id, orders, facts["confirmed"]) if orders else None


def customers(facts: Facts) -> list[dict[str, Any]]:
    return [_cadence(cid, orders, facts["confirmed"]) for cid, orders in sorted(_orders_by_customer(facts).items())]


def awaiting_order_placed(facts: Facts) -> dict[str, int]:
    """Later-stage facts whose OrderPlaced has not arrived (yet): topics carry no order between them."""
    placed = facts["placed"]
    return {t: sum(1 for k in facts[t] if k not in placed)
            for t in ("verified", "declined", "confirmed", "shipped", "cancelled")}


DSO_DAYS_DEFAULT = 90
_TENTH = Decimal("0.1")
_CENTS = Decimal("0.00")


def receivables(facts: Facts, at: datetime, days: int = DSO_DAYS_DEFAULT) -> dict[str, Any]:
    """Receivables outstanding and days sales outstanding per currency (definitions above)."""
    since = at - timedelta(days=days)
    zero = lambda: {"outstanding": _CENTS, "unapplied_credit": _CENTS, "accounts_owing": 0,  # noqa: E731
                    "accounts_on_hold": 0, "invoiced": _CENTS, "credited": _CENTS}
    by: dict[str, dict] = defaultdict(zero)
    for acc in facts.get("accounts", {}).values():
        row = by[acc["currency"]]
        row["outstanding"] += Decimal(acc["open_balance"])
        row["unapplied_credit"] += Decimal(acc["unapplied_credit"])
        row["accounts_owing"] += Decimal(acc["open_balance"]) > 0
        row["accounts_on_hold"] += bool(acc["on_hold"])
    for table, field, into in (("invoiced", "total", "invoiced"), ("credited", "amount", "credited")):
        for doc in facts.get(table, {}).values():
            if since < ts(doc["at"]) <= at:
                by[doc["currency"]][into] += Decimal(doc[field])
    rows = []
    for currency, r in sorted(by.items()):
        sales = r["invoiced"] - r["credited"]
        dso = (r["outstanding"] / sales * days).quantize(_TENTH, ROUND_HALF_EVEN) if sales > 0 else None
        rows.append({"currency": currency, "outstanding": format(r["outstanding"], "f"),
                     "unapplied_credit": format(r["unapplied_credit"], "f"),
                     "accounts_owing": int(r["accounts_owing"]), "accounts_on_hold": int(r["accounts_on_hold"]),
                     "invoiced": format(r["invoiced"], "f"), "credited": format(r["credited"], "f"),
                     "credit_sales": format(sales, "f"), "dso_days": None if dso is None else format(dso, "f")})
    return {"at": iso(at), "days": days, "by_currency": rows}
