"""Prometheus metrics of the analytics app.

Counters move as records are applied. The business gauges (revenue, funnel, latency,
standing orders) are computed from the tables on the event loop by ``refresh`` (a faust timer,
and before each scrape of the app's own /metrics), then only read by the collector: a scrape
from another thread (runtime.metrics.HealthServer) never iterates a table while it changes.
Prometheus samples are floats; the exact decimal figures are in the JSON endpoints.
"""
from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily

from services.analytics import aggregates

EVENTS = Counter("salesbus_analytics_events_total", "Records applied to the analytics tables", ["topic"])
DEAD_LETTERED = Counter("salesbus_analytics_dead_lettered_total", "Records analytics sent to <topic>.DLQ",
                        ["topic", "reason"])

_snapshot: list[GaugeMetricFamily] = []


def _family(name: str, doc: str, labels: list[str], samples) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in samples:
        if value is not None:
            fam.add_metric(list(label_values), float(value))
    return fam


def refresh(analytics) -> None:
    """Recompute the business gauges (call on the event loop)."""
    global _snapshot
    facts = analytics.facts()
    rev = analytics.view("revenue", lambda: aggregates.revenue(facts, "day"), "day", None, None)
    fun = analytics.view("funnel", lambda: aggregates.funnel(facts, "hour"), "hour", None, None)
    lat = analytics.view("latency", lambda: aggregates.latency(facts), None, None)
    now = analytics.clock.now().astimezone(UTC).replace(microsecond=0)
    so = aggregates.standing_orders(facts, now)
    recv = aggregates.receivables(facts, now)
    total = fun["total"]
    _snapshot = [
        _family("salesbus_analytics_revenue_booked", "Revenue booked at confirmation, all time",
                ["sku", "currency"], [((r["sku"], r["currency"]), r["revenue"]) for r in rev["by_sku"]]),
        _family("salesbus_analytics_units_booked", "Units in confirmed orders, all time",
                ["sku", "currency"], [((r["sku"], r["currency"]), r["units"]) for r in rev["by_sku"]]),
        _family("salesbus_analytics_orders", "Orders placed, and how many reached each later stage",
                ["stage"], [(("placed",), total["placed"])] + [((s,), total[s]) for s in aggregates.STAGES]),
        _family("salesbus_analytics_orders_declined", "Payments declined, by reason",
                ["reason"], [((r,), n) for r, n in total["declined_by_reason"].items()]),
        _family("salesbus_analytics_latency_seconds", "Order latency percentiles (nearest rank) between the order's own business timestamps",
                ["span", "quantile"], [((span, str(p / 100)), lat[span][f"p{p}"])
                                       for span in ("placed_to_confirmed", "confirmed_to_shipped")
                                       for p in aggregates.PERCENTILES]),
        _family("salesbus_analytics_processing_latency_seconds",
                "Order latency percentiles on the wall clock: between the record timestamps of the order's own events",
                ["span", "quantile"], [((span, str(p / 100)), lat["processing"][span][f"p{p}"])
                                       for span in ("placed_to_confirmed", "confirmed_to_shipped")
                                       for p in aggregates.PERCENTILES]),
        _family("salesbus_analytics_standing_orders", "Standing orders by status",
                ["status"], [((s,), n) for s, n in so["by_status"].items()]),
        _family("salesbus_analytics_standing_expected_units", "Units standing orders will place",
                ["sku", "horizon_days"], [((sku, h), u) for h, v in so["horizons"].items()
                                          for sku, u in v["units"].items()]),
        _family("salesbus_analytics_receivables_outstanding", "Open balances of all supplier accounts",
                ["currency"], [((r["currency"],), r["outstanding"]) for r in recv["by_currency"]]),
        _family("salesbus_analytics_days_sales_outstanding",
                f"Receivables outstanding / net credit sales of the last {aggregates.DSO_DAYS_DEFAULT} days x days",
                ["currency"], [((r["currency"],), r["dso_days"]) for r in recv["by_currency"]]),
        _family("salesbus_analytics_position", "Next offset to apply, per topic partition",
                ["topic", "partition"], [((t, p), o) for t, parts in analytics.as_of()["positions"].items()
                                         for p, o in parts.items()]),
        _family("salesbus_analytics_refreshed_timestamp_seconds", "When these gauges were computed",
                [], [((), datetime.now(UTC).timestamp())]),
    ]


class _Snapshot:
    def collect(self):
        return list(_snapshot)


REGISTRY.register(_Snapshot())
