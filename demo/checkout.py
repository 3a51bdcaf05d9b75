"""Demo flow: checkout to doorstep.

Four web orders (card approved, on account, card declined, account over its credit limit) and
one order sent straight to the bus by an upstream EDI gateway. The simulated distribution centre
ships the good ones. Per order: the event timeline, confirmation number, emails, final state.
"""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from confluent_kafka import Producer
from rich.markup import escape
from rich.table import Table

from demo.context import DemoContext
from demo.money import pay_open_invoices
from demo.seed import seed_catalog
from schemas import OrderPlaced, envelope, to_record

FLOW_TOPICS = ["OrderPlaced", "PaymentVerified", "PaymentDeclined", "OrderConfirmed", "OrderShipped",
               "OrderCancelled", "NotificationSent"]

CUSTOMERS = {
    "adriatic-hotels": {"name": "Adriatic Hotels d.o.o.", "language": "hr", "limit": "5000.00", "city": "Split",
                        "country": "HR", "email": "nabava@adriatic-hotels.example"},
    "lyon-facilities": {"name": "Lyon Facilities SARL", "language": "fr", "limit": "150.00", "city": "Lyon",
                        "country": "FR", "email": "achats@lyon-facilities.example"},
    "madrid-offices": {"name": "Oficinas Madrid S.L.", "language": "es", "limit": None, "city": "Madrid",
                       "country": "ES", "email": "compras@oficinas-madrid.example"},
    "warsaw-depot": {"name": "Magazyn Warszawa Sp. z o.o.", "language": "pl", "limit": None, "city": "Warszawa",
                     "country": "PL", "email": "zakupy@magazyn-warszawa.example"},
    "saigon-trading": {"name": "Saigon Trading JSC", "language": "vi", "limit": "20000.00", "city": "Ho Chi Minh City",
                       "country": "VN", "email": "muahang@saigon-trading.example"},
}

SCENARIOS = [
    # (label, customer, payment, lines, expected final state)
    ("card, approved", "madrid-offices", {"mode": "card", "card_token": "tok_visa_approved"},
     {"BULB-LED-9W": 200, "SWITCH-1G-WHT": 10}, "shipped"),
    ("on account, within limit", "adriatic-hotels", {"mode": "account"}, {"BULB-LED-9W": 500, "TUBE-T8-1500": 40},
     "shipped"),
    ("card, declined (insufficient funds)", "warsaw-depot", {"mode": "card", "card_token": "tok_insufficient_funds"},
     {"GLOVES-NITRILE-L": 30}, "declined"),
    ("on account, over its credit limit", "lyon-facilities", {"mode": "account"}, {"TUBE-T8-1500": 60}, "declined"),
]


def delivery(cid: str) -> dict:
    c = CUSTOMERS[cid]
    return {"recipient": f"{c['name']} — goods in", "address_lines": ["Industrial zone 4", "Gate B"],
            "city": c["city"], "postal_code": "10000", "country": c["country"], "phone": "+385 1 555 0100",
            "email": c["email"]}


def open_accounts(ctx: DemoContext) -> None:
    with ctx.client("payments", "operator", "demo-operator") as ops:
        for cid, c in CUSTOMERS.items():
            if c["limit"]:
                r = ops.put(f"/accounts/{cid}", json={"credit_limit": c["limit"], "currency": "EUR",
                                                      "payment_terms_days": 30, "status": "active"})
                ctx.check(r.status_code in (200, 201), f"open account {cid}: {r.status_code} {r.text[:200]}")


def web_checkout(ctx: DemoContext, cid: str, payment: dict, lines: dict[str, int]) -> str | None:
    with ctx.client("cart", "customer", cid) as shop:
        cart = shop.post("/carts").json()
        for sku, qty in lines.items():
            r = shop.put(f"/carts/{cart['cart_id']}/lines/{sku}", json={"quantity": qty})
            ctx.check(r.status_code == 200, f"add {sku} to cart: {r.status_code} {r.text[:200]}")
        body = {"delivery": delivery(cid), "payment": payment, "language": CUSTOMERS[cid]["language"]}
        r = shop.post(f"/carts/{cart['cart_id']}/checkout", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        if not ctx.check(r.status_code == 202, f"checkout for {cid}: {r.status_code} {r.text[:200]}"):
            return None
        return r.json()["order_id"]


def edi_order(ctx: DemoContext) -> str:
    """An upstream EDI gateway publishes OrderPlaced straight to the bus (no cart involved)."""
    order_id = f"edi-{uuid.uuid4().hex[:8]}"
    price = Decimal("1.85")
    ev = OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": "saigon-trading", "channel": "edi",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb 9W E27", "quantity": 1000,
                   "unit_price": {"amount": str(price), "currency": "EUR"}}],
        "total": {"amount": str(price * 1000), "currency": "EUR"},
        "delivery": delivery("saigon-trading"), "payment": {"mode": "account"}, "language": "vi",
        "placed_at": datetime.now(timezone.utc)})
    key, value, headers = to_record(envelope(ev, source="edi-gateway"))
    producer = Producer(ctx.cfg.kafka_common())
    producer.produce("OrderPlaced", key=key, value=value, headers=headers)
    producer.flush(10)
    return order_id


def order_status(ctx: DemoContext, order_id: str) -> dict:
    with ctx.client("orders", "operator", "demo-operator") as api:
        r = api.get(f"/orders/{order_id}")
        return r.json() if r.status_code == 200 else {}


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]1. Checkout to doorstep")
    with ctx.client("cart", "operator", "demo-operator") as ops:
        products = seed_catalog(ops)
    ctx.console.print(f"catalog seeded: {len(products)} products; supplier accounts opened for "
                      f"{sum(1 for c in CUSTOMERS.values() if c['limit'])} customers")
    open_accounts(ctx)

    placed: list[tuple[str, str, str, str]] = []
    for label, cid, payment, lines, expected in SCENARIOS:
        order_id = web_checkout(ctx, cid, payment, lines)
        if order_id:
            placed.append((label, cid, order_id, expected))
    placed.append(("EDI gateway, straight onto the bus, on account", "saigon-trading", edi_order(ctx), "shipped"))

    final = {"shipped", "declined", "cancelled"}
    ctx.wait_for(lambda: all(order_status(ctx, oid).get("status") in final for _, _, oid, _ in placed),
                 timeout=90, what="every order to be shipped or declined")
    expected_emails = sum(2 if order_status(ctx, oid).get("status") == "shipped" else 1 for _, _, oid, _ in placed)
    ctx.wait_for(lambda: len([m for m in ctx.mail() if m.get("X-Salesbus-Kind")]) >= expected_emails,
                 timeout=60, what=f"{expected_emails} emails")

    records = ctx.records(FLOW_TOPICS)
    mail = ctx.mail()
    for label, cid, order_id, expected in placed:
        report_order(ctx, label, cid, order_id, expected, records, mail)
    totals(ctx, placed, records, mail)
    show_tap(ctx, placed[0][2])
    ctx.console.print("\n[bold]month end[/bold]: the customers on account pay their invoices")
    for cid in sorted({cid for _, cid, _, _ in placed if CUSTOMERS.get(cid, {}).get("limit")}):
        pay_open_invoices(ctx, cid)


def show_tap(ctx: DemoContext, order_id: str) -> None:
    """The same journey as an analyst sees it on the bus: each event came out of a service's outbox."""
    from runtime.tap import pretty, tap
    ctx.console.print(f"\n[bold]on the bus[/bold] — what `salesbus tap OrderPlaced PaymentVerified OrderConfirmed "
                      f"OrderShipped --key {order_id}` prints:")
    recs = list(tap(ctx.cfg.kafka_common(), ["OrderPlaced", "PaymentVerified", "OrderConfirmed", "OrderShipped"],
                    follow=False, keys={order_id}))
    for rec in sorted(recs, key=lambda r: (r.event() or {}).get("time", "")):  # topics interleave; show in time order
        ctx.console.print(escape(pretty(rec)[:230]), soft_wrap=True)
    ctx.console.print("  (each came out of the producing service's outbox: cart → payments → orders; "
                      "ce_source names it, traceparent ties them into one trace)")


def report_order(ctx: DemoContext, label: str, cid: str, order_id: str, expected: str, records: list[dict],
                 mail: list) -> None:
    status = order_status(ctx, order_id)
    ctx.console.print(f"\n[bold]{label}[/bold] — {CUSTOMERS[cid]['name']} ({CUSTOMERS[cid]['language']}), "
                      f"order {order_id}")
    table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2))
    for col in ("time (UTC)", "event", "from", "detail"):
        table.add_column(col)
    for r in sorted((r for r in records if r["_key"] == order_id or r.get("data", {}).get("order_id") == order_id),
                    key=lambda r: r["time"]):
        table.add_row(r["time"][11:23], r["type"], r["source"], escape(detail(r)))
    ctx.console.print(table)
    ctx.console.print(f"  confirmation number: [bold]{status.get('confirmation_number') or '—'}[/bold]   "
                      f"final state: [bold]{status.get('status', '?')}[/bold]")
    number = status.get("confirmation_number") or order_id
    emails = [m for m in mail if m["To"] == CUSTOMERS[cid]["email"] and (number in m["Subject"] or order_id in m["Subject"])]
    for m in emails:
        ctx.console.print(f"  ✉ to {m['To']}  ({m.get('X-Salesbus-Language', '?')}, {m.get('X-Salesbus-Kind', '?')})  "
                          f"{escape(str(m['Subject']))}")
    ctx.check(status.get("status") == expected, f"{order_id} should be {expected}")
    if expected == "shipped":
        ctx.check(bool(status.get("confirmation_number")), f"{order_id} should have a confirmation number")
    ctx.check(len(emails) >= 1, f"{order_id}: an email to {CUSTOMERS[cid]['email']}")


def detail(r: dict) -> str:
    d = r.get("data", {})
    t = r["type"]
    if t == "OrderPlaced":
        return f"{len(d['lines'])} line(s), total {d['total']['amount']} {d['total']['currency']}, {d['payment']['mode']} via {d.get('channel')}"
    if t == "PaymentVerified":
        return f"{d['amount']['amount']} {d['amount']['currency']} by {d['method']} ({d['charge_reference']})"
    if t == "PaymentDeclined":
        return f"{d['reason_code']}: {d['message']}"
    if t == "OrderConfirmed":
        return f"confirmation number {d['confirmation_number']}"
    if t == "OrderShipped":
        return f"{d['carrier']} {d['tracking_number']} from {d['distribution_centre']}"
    if t == "NotificationSent":
        return f"{d['kind']} → {d['recipient']} [{d['language']}]"
    return ""


def totals(ctx: DemoContext, placed, records: list[dict], mail: list) -> None:
    ours = {oid for _, _, oid, _ in placed}
    counts = Counter(r["type"] for r in records if r.get("data", {}).get("order_id") in ours)
    ctx.console.print("\n[bold]totals[/bold]: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                      + f"; emails delivered {len(mail)}")
    ctx.check(counts["OrderPlaced"] == len(placed), f"one OrderPlaced per order (saw {counts['OrderPlaced']})")
    ctx.check(counts["OrderConfirmed"] == 3, f"three orders confirmed (saw {counts['OrderConfirmed']})")
    ctx.check(counts["PaymentDeclined"] == 2, f"two payments declined (saw {counts['PaymentDeclined']})")
