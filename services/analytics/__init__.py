"""Analytics: a faust-streaming app that follows the business topics and serves live figures.

Run it:  ``python -m services.analytics [--broker HOST:PORT] [--web-port 6066] [--app-id ID]
[--data-dir DIR] [--metrics-port N]`` (defaults from SALESBUS_KAFKA_BOOTSTRAP / the embedded
stack's stack.json, SALESBUS_HTTP_PORT, SALESBUS_METRICS_PORT), or from Python
``services.analytics.app.run(bootstrap, web_port=..., app_id=..., data_dir=...)``.
The app id is also its consumer group and the prefix of its changelog topics
(``<app id>-<table>-changelog``): a new id rebuilds everything from the topics.

Endpoints (JSON, GET; each answer has ``as_of`` = the topic positions its figures include):
  /analytics/revenue?window=day|hour&since=&until=   booked revenue per window, SKU, currency
  /analytics/funnel?window=hour|day&since=&until=    placed -> paid/declined (by reason) -> confirmed -> shipped
  /analytics/latency?since=&until=                   p50/p95/p99 placed->confirmed, confirmed->shipped (s)
  /analytics/standing-orders?at=                     active count; expected units per SKU, next 30/60/90 days
  /analytics/receivables?days=90&at=               receivables outstanding, days sales outstanding
  /analytics/customers, /analytics/customers/{id}    ordering cadence: last order, median interval
  /analytics/status                                  facts per table, readiness, early later-stage facts
  /metrics (Prometheus), /healthz, /readyz
Definitions of every figure: services/analytics/aggregates.py.

State: one faust table per consumed topic holding one fact per order (or standing order), a
changelog-backed in-memory store, so a restart rebuilds the tables from their changelog topics
and carries on from the committed offsets. The figures are computed from the facts on request
(cached until the next record): windows are in event time, so a late EDI upload still lands in
the hour it was placed, and nothing is lost when a window "closes".

Why at-least-once delivery is good enough here:
  * Duplicates change nothing. Every write is idempotent by the aggregate's id (first fact per
    order wins, a standing order keeps its latest state by changed_at, positions only advance),
    and counts are derived from those facts, never incremented per delivery. A record
    redelivered after a crash (its table write reached the changelog, its offset commit did
    not), or an order an upstream system published twice, is counted once.
  * Losses are designed out where faust allows it. faust-streaming #315: an agent that raises
    has its event acked anyway (the ack sits in a ``finally``), so that record would be skipped
    after a restart. The handler therefore does not raise for a record: anything it cannot use
    (bad JSON, bad envelope, bad payload, a schedule that cannot be projected, or a bug) goes to
    ``<topic>.DLQ`` with the same ``__connect.errors.*`` headers as every service, and the
    dead-letter write is awaited before the record counts as processed. Only a broker failure
    while dead-lettering can still raise there. faust-streaming #606: with concurrency above one,
    faust can commit past a record still being processed; the agent runs with concurrency=1, so
    records are applied and acked strictly in offset order.
  * What remains is detectable and repairable: ``as_of`` shows exactly which records the figures
    include, the oracle test recomputes them independently from the topics, and running with a
    new app id rebuilds every table from the topics.

One worker: the figures are computed over all partitions, so run a single instance (a second
one would split the partitions and each would see part of the data).
"""
