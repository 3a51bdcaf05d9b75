"""Demo flow: a standing order through a year and a bit.

"1000 light bulbs (BULB-LED-9W) every two months, until further notice", on account, placed at
the cart's checkout. The shared clock is moved to each due date: six orders in the first year,
each placed, confirmed, shipped and emailed by the other services. Then the customer pauses
(occurrence 7 falls in the pause and is not placed), resumes, skips the next delivery (8) and
finally cancels: no seventh order ever appears.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from confluent_kafka import Consumer, TopicPartition
from rich.markup import escape
from rich.table import Table

from demo.context import DemoContext
from demo.money import pay_open_invoices
from demo.seed import seed_catalog
from services.scheduler.recurrence import Recurrence

CUSTOMER = "wroclaw-lighting"
NAME = "Oświetlenie Wrocław Sp. z o.o."
EMAIL = "zakupy@oswietlenie-wroclaw.example"
TZ = "Europe/Warsaw"
SKU, QUANTITY = "BULB-LED-9W", 1000
DELIVERY = {"recipient": f"{NAME} — magazyn", "address_lines": ["ul. Fabryczna 12", "Brama 2"], "city": "Wrocław",
            "postal_code": "53-609", "country": "PL", "phone": "+48 71 555 01 00", "email": EMAIL}
# The scheduler's ticker runs every 0.2 s; this is how long the demo lets a moment settle before
# showing that nothing was placed (a demo, not a test: the checks below read the real outcome).
SETTLE_S = 3.0


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]2. Standing order: 1000 light bulbs every two months")
    with ctx.client("cart", "operator", "demo-operator") as ops:
        seed_catalog(ops)
    with ctx.client("payments", "operator", "demo-operator") as pay:
        r = pay.put(f"/accounts/{CUSTOMER}", json={"credit_limit": "30000.00", "currency": "EUR",
                                                    "payment_terms_days": 30, "status": "active"})
        ctx.check(r.status_code in (200, 201), f"open account {CUSTOMER}: {r.status_code} {r.text[:200]}")

    # Orders prices each occurrence from its own copy of the catalog: let it read the catalog first
    # (an occurrence due before that fails as "not in the catalog", which is right but not this story).
    ctx.wait_for(lambda: consumed_all(ctx, "orders", "ProductChanged"), timeout=60, what="orders to read the catalog")

    start = ctx.clock.now().astimezone(ZoneInfo(TZ)).date() + timedelta(days=1)
    schedule = Recurrence(start, 2, "months", TZ)
    so_id = place_standing_order(ctx, start)
    if so_id is None:
        return
    sched = ctx.client("scheduler", "customer", CUSTOMER)
    if not ctx.wait_for(lambda: sched.get(f"/standing-orders/{so_id}").status_code == 200, timeout=60,
                        what="the scheduler to take the standing order"):
        return
    upcoming = sched.get(f"/standing-orders/{so_id}").json()["upcoming"]
    ctx.console.print(f"standing order {so_id} for {NAME}: {QUANTITY} × {SKU} every 2 months from {start} "
                      f"({TZ}, 08:00 local), until further notice; next: "
                      + ", ".join(u["local_date"] for u in upcoming[:6]))

    # A year: each due date in turn, and the order it produces all the way to the customer's inbox.
    for n in range(1, 7):
        advance_to(ctx, schedule.occurrence_at(n) + timedelta(minutes=5))
        ok = ctx.wait_for(lambda n=n: occurrence_order(ctx, so_id, n).get("status") == "shipped", timeout=90,
                          what=f"occurrence {n} to be placed, confirmed and shipped")
        order = occurrence_order(ctx, so_id, n)
        if ok:
            ctx.wait_for(lambda: len(emails_for(ctx, order)) >= 2, timeout=60,
                         what=f"the confirmation and shipping emails of occurrence {n}")
        ctx.console.print(f"  {schedule.occurrence_date(n)}  occurrence {n}: order {order.get('order_id', '—')} "
                          f"{order.get('confirmation_number') or ''} {order.get('status', 'missing')}"
                          + ("" if ok else " [red](incomplete)[/red]"))
        pay_open_invoices(ctx, CUSTOMER, indent="               ")

    # Pause over occurrence 7, resume, skip 8, cancel before 9.
    paused = sched.post(f"/standing-orders/{so_id}/pause")
    ctx.check(paused.status_code == 200 and paused.json()["status"] == "paused", f"pause: {paused.text[:200]}")
    advance_to(ctx, schedule.occurrence_at(7) + timedelta(days=1))
    time.sleep(SETTLE_S)
    with ctx.client("scheduler", "salesperson", "rep-marta") as rep:  # the account manager, on the phone
        resumed = rep.post(f"/standing-orders/{so_id}/resume").json()
    ctx.console.print(f"  paused over {schedule.occurrence_date(7)}; resumed by the account manager: next is "
                      f"occurrence {resumed.get('next_occurrence')} on "
                      f"{(resumed.get('upcoming') or [{}])[0].get('local_date', '—')}")
    ctx.check(resumed.get("next_occurrence") == 8, "occurrence 7 (due while paused) is not placed after resuming")
    skipped = sched.post(f"/standing-orders/{so_id}/skip-next").json()
    ctx.console.print(f"  customer skips the next delivery: skipped {skipped.get('skip_occurrences')}, next is "
                      f"occurrence {skipped.get('next_occurrence')}")
    ctx.check(skipped.get("skip_occurrences") == [8], "skip-next skips occurrence 8")
    advance_to(ctx, schedule.occurrence_at(8) + timedelta(days=1))
    cancelled = sched.post(f"/standing-orders/{so_id}/cancel").json()
    ctx.console.print(f"  customer cancels: status {cancelled.get('status')}")
    ctx.check(cancelled.get("status") == "cancelled", "the standing order is cancelled")
    advance_to(ctx, schedule.occurrence_at(10) + timedelta(days=1))
    time.sleep(SETTLE_S)

    report(ctx, so_id, schedule)
    sched.close()


def place_standing_order(ctx: DemoContext, start) -> str | None:
    """At the cart's checkout as a standing order; the scheduler's own API if the cart refuses."""
    terms = {"interval": {"every": 2, "unit": "months"}, "start_date": start.isoformat(), "time_zone": TZ}
    with ctx.client("cart", "customer", CUSTOMER) as shop:
        cart = shop.post("/carts")
        if cart.status_code in (200, 201):
            cart_id = cart.json()["cart_id"]
            shop.put(f"/carts/{cart_id}/lines/{SKU}", json={"quantity": QUANTITY})
            r = shop.post(f"/carts/{cart_id}/checkout", headers={"Idempotency-Key": str(uuid.uuid4())},
                          json={"delivery": DELIVERY, "payment": {"mode": "account"}, "language": "pl",
                                "standing_order": terms})
            if r.status_code == 202 and r.json().get("standing_order_id"):
                ctx.console.print(f"checkout as a standing order at the cart: 202 {r.json()}")
                return r.json()["standing_order_id"]
            ctx.console.print(f"[yellow]cart checkout as a standing order answered {r.status_code} "
                              f"{escape(r.text[:200])}; using the scheduler's API[/yellow]")
    with ctx.client("scheduler", "customer", CUSTOMER) as sched:
        r = sched.post("/standing-orders", headers={"Idempotency-Key": str(uuid.uuid4())},
                       json={"lines": [{"sku": SKU, "quantity": QUANTITY}], "delivery": DELIVERY,
                             "payment": {"mode": "account"}, "language": "pl",
                             "interval": {"every": 2, "unit": "months"}, "start_date": start.isoformat(),
                             "time_zone": TZ})
    if not ctx.check(r.status_code == 201, f"create the standing order: {r.status_code} {r.text[:200]}"):
        return None
    return r.json()["standing_order_id"]


def consumed_all(ctx: DemoContext, group: str, topic: str) -> bool:
    """Has the service's consumer group committed every record of the topic so far?"""
    consumer = Consumer({**ctx.cfg.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:  # asking for committed offsets does not join the group: the service is not disturbed
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        for tp in consumer.committed(parts, timeout=10):
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def advance_to(ctx: DemoContext, instant: datetime) -> None:
    delta = instant - ctx.clock.now()
    if delta > timedelta(0):
        ctx.clock.advance(delta)


def standing_orders(ctx: DemoContext, so_id: str) -> dict[int, dict]:
    """The orders placed for this standing order, by occurrence (from the orders service)."""
    found: list[dict] = []
    with ctx.client("orders", "operator", "demo-operator") as api:
        url: str | None = f"/customers/{CUSTOMER}/orders?limit=200"
        while url:  # every page (docs/api.md): follow `next`
            r = api.get(url)
            if r.status_code != 200:
                return {}
            found += r.json()["items"]
            url = r.json()["next"]
    return {o["occurrence"]: o for o in found if o.get("standing_order_id") == so_id}


def occurrence_order(ctx: DemoContext, so_id: str, n: int) -> dict:
    return standing_orders(ctx, so_id).get(n, {})


def emails_for(ctx: DemoContext, order: dict, mail: list | None = None) -> list:
    refs = [r for r in (order.get("confirmation_number"), order.get("order_id")) if r]
    return [m for m in (ctx.mail() if mail is None else mail)
            if EMAIL in str(m["To"]) and any(r in str(m["Subject"]) for r in refs)]


def report(ctx: DemoContext, so_id: str, schedule: Recurrence) -> None:
    orders = standing_orders(ctx, so_id)
    records = ctx.records(["RecurringOrderDue", "StandingOrderChanged"])
    due = {r["data"]["occurrence"] for r in records if r["_topic"] == "RecurringOrderDue" and r["_key"] == so_id}
    changes = [r["data"]["change"] for r in sorted(
        (r for r in records if r["_topic"] == "StandingOrderChanged" and r["_key"] == so_id), key=lambda r: r["time"])]
    mail = ctx.mail()

    table = Table(title=f"standing order {so_id}", header_style="dim", box=None, padding=(0, 2))
    for col in ("occurrence", "due (Warsaw)", "order id", "confirmation", "state", "emails"):
        table.add_column(col)
    notes = {7: "paused — not placed", 8: "skipped", 9: "cancelled — none", 10: "cancelled — none"}
    for n in range(1, 11):
        order = orders.get(n, {})
        number = order.get("confirmation_number")
        kinds = [str(m.get("X-Salesbus-Kind", "?")) for m in emails_for(ctx, order, mail)] if order else []
        table.add_row(str(n), str(schedule.occurrence_date(n)), order.get("order_id", "—"), number or "—",
                      order.get("status") or notes.get(n, "missing"), ", ".join(kinds) or "—")
        if n <= 6:
            ctx.check(order.get("status") == "shipped", f"occurrence {n} shipped (is {order.get('status')})")
            ctx.check(bool(number), f"occurrence {n} has a confirmation number")
            ctx.check(len(kinds) >= 2, f"occurrence {n}: confirmation and shipping emails (saw {kinds})")
    ctx.console.print(table)
    ctx.console.print(f"changes: {' → '.join(changes)}; RecurringOrderDue for occurrences {sorted(due)}")
    ctx.check(due == {1, 2, 3, 4, 5, 6}, f"RecurringOrderDue exactly for occurrences 1-6 (saw {sorted(due)})")
    ctx.check(sorted(orders) == [1, 2, 3, 4, 5, 6], f"six orders and no seventh (saw occurrences {sorted(orders)})")
    ctx.check(changes[:1] == ["created"] and {"paused", "resumed", "skipped", "cancelled"} <= set(changes),
              f"StandingOrderChanged for each change (saw {changes})")
