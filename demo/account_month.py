"""One customer's month on a supplier account: orders on account and their invoice emails with
the PDF, the due date passing, a reminder, the account on hold (an order declined), the late
payment and the release, and the statement of the month.

Runs last: it moves the shared clock by weeks, and the overdue worker (payments) acts on the
customer's local mornings."""
from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from confluent_kafka import Producer
from rich.table import Table

from demo.context import DemoContext
from schemas import OrderPlaced, envelope, to_record

CUSTOMER = "marina-kastela"
BILLING = "racuni@marina-kastela.example"
TZ = "Europe/Zagreb"
PRICE, QTY = Decimal("1.85"), 400   # 740.00 EUR an order


def order(order_id: str, now: datetime) -> OrderPlaced:
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": CUSTOMER, "channel": "edi", "language": "hr",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb 9W E27", "quantity": QTY,
                   "unit_price": {"amount": str(PRICE), "currency": "EUR"}}],
        "total": {"amount": str(PRICE * QTY), "currency": "EUR"},
        "delivery": {"recipient": "Marina Kaštela — skladište", "address_lines": ["Obala 3"], "city": "Kaštela",
                     "postal_code": "21212", "country": "HR", "phone": "+385 21 555 0300",
                     "email": "nabava@marina-kastela.example"},
        "payment": {"mode": "account"}, "placed_at": now})


def place(ctx: DemoContext) -> str:
    order_id = f"edi-{uuid.uuid4().hex[:8]}"
    key, value, headers = to_record(envelope(order(order_id, ctx.clock.now()), source="edi-gateway"))
    producer = Producer(ctx.cfg.kafka_common())
    producer.produce("OrderPlaced", key=key, value=value, headers=headers)
    producer.flush(10)
    return order_id


def to_morning(ctx: DemoContext, days: int) -> None:
    """Move the clock to 08:05 in the customer's zone, `days` days on: the overdue worker's hour."""
    local = (ctx.clock.now().astimezone(ZoneInfo(TZ)) + timedelta(days=days)).date()
    target = datetime.combine(local, time(8, 5), ZoneInfo(TZ))
    ctx.clock.advance(target - ctx.clock.now())


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]5. A month on a supplier account: invoices, a reminder, a hold, the payment")
    ops = ctx.client("payments", "operator", "demo-operator")
    r = ops.put(f"/accounts/{CUSTOMER}", json={"credit_limit": "2000.00", "currency": "EUR", "payment_terms_days": 14,
                                               "time_zone": TZ, "billing_email": BILLING, "language": "hr"})
    if not ctx.check(r.status_code in (200, 201), f"open {CUSTOMER}'s account: {r.status_code} {r.text[:200]}"):
        return
    start = ctx.clock.now().astimezone(ZoneInfo(TZ)).date()
    ctx.console.print(f"{CUSTOMER}: credit limit 2000.00 EUR, net 14, billing contact {BILLING} (hr, {TZ})")

    def account() -> dict:
        return ops.get(f"/accounts/{CUSTOMER}").json()

    def mail(kind: str) -> list:
        return [m for m in ctx.mail() if m["To"] == BILLING and m.get("X-Salesbus-Kind") == kind]

    orders = [place(ctx), place(ctx)]
    ctx.wait_for(lambda: len(mail("invoice")) == 2, 90, "two invoice emails")
    for m in mail("invoice"):
        pdfs = [p for p in m.iter_attachments() if p.get_content_type() == "application/pdf"]
        ctx.check(len(pdfs) == 1, f"the invoice email {m['Subject']} carries its PDF")
        ctx.console.print(f"  ✉ {BILLING}: {m['Subject']} + {pdfs[0].get_filename() if pdfs else 'no PDF'} "
                          f"({len(pdfs[0].get_content()) if pdfs else 0} bytes)")
    ctx.console.print(f"  orders {', '.join(orders)} on account: open balance {account()['open_balance']} EUR")

    to_morning(ctx, 17)   # 3 days past due: the first reminder step
    ctx.wait_for(lambda: len(mail("invoice_overdue")) >= 2, 60, "a reminder per overdue invoice")
    for m in mail("invoice_overdue"):
        ctx.console.print(f"  ✉ {BILLING}: {m['Subject']}")

    to_morning(ctx, 28)   # 31 days past due: the account goes on hold
    ctx.wait_for(lambda: account()["on_hold"], 60, "the account to go on hold")
    ctx.wait_for(lambda: len(mail("invoice_overdue")) == 6, 60, "reminders at 3, 14 and 30 days for both invoices")
    ctx.console.print(f"  31 days past due: {len(mail('invoice_overdue'))} reminders in all (3, 14, 30 days, "
                      "each once per invoice); the account is on hold")
    held = place(ctx)
    with ctx.client("orders", "operator", "demo-operator") as orders_api:
        ctx.wait_for(lambda: orders_api.get(f"/orders/{held}").json().get("status") == "declined", 60,
                     "the order on a held account to be declined")
    declined = [m for m in ctx.mail() if "nabava@marina-kastela.example" == m["To"]
                and m.get("X-Salesbus-Kind") == "payment_declined"]
    ctx.console.print(f"  on hold: order {held} declined (account_on_hold); decline email sent: {bool(declined)}")

    owed = account()["open_balance"]
    r = ops.post(f"/accounts/{CUSTOMER}/payments", json={"payer_reference": f"HR12-{uuid.uuid4().hex[:10]}",
                                                          "amount": owed, "currency": "EUR"})
    ctx.check(r.status_code == 201, f"record the late payment: {r.status_code} {r.text[:200]}")
    after = account()
    ctx.check(not after["on_hold"], "the payment releases the hold")
    ctx.console.print(f"  late payment of {owed} EUR recorded: open balance {after['open_balance']}, "
                      f"on hold {after['on_hold']}")
    again = place(ctx)
    with ctx.client("orders", "operator", "demo-operator") as orders_api:
        ctx.wait_for(lambda: orders_api.get(f"/orders/{again}").json().get("status") in ("confirmed", "shipped"), 60,
                     "the next account order to be accepted")

    st = ops.get(f"/accounts/{CUSTOMER}/statement",
                 params={"from": start.isoformat(), "to": ctx.clock.now().astimezone(ZoneInfo(TZ)).date().isoformat()})
    if not ctx.check(st.status_code == 200, f"the statement: {st.status_code} {st.text[:200]}"):
        return
    s = st.json()
    table = Table(title=f"statement of account {CUSTOMER}, {s['period_from']} – {s['period_to']} ({s['time_zone']})",
                  header_style="dim", box=None, padding=(0, 2))
    for col in ("date", "document", "kind", "amount", "balance"):
        table.add_column(col)
    table.add_row("", "opening balance", "", "", s["opening_balance"])
    for ln in s["lines"]:
        table.add_row(ln["date"], ln["document"], ln["kind"], ln["amount"], ln["balance"])
    table.add_row("", "closing balance", "", "", s["closing_balance"])
    ctx.console.print(table)
    ctx.check(Decimal(s["closing_balance"]) == Decimal(s["opening_balance"]) + Decimal(s["invoices"])
              - Decimal(s["payments"]) - Decimal(s["credit_notes"]), "the statement adds up")
    books = ops.get("/ledger/trial-balance").json()
    ctx.check(books["balanced"], f"the trial balance is zero: {books['totals']}")
    ctx.console.print(f"  trial balance: {books['totals']} across {len(books['accounts'])} ledger accounts")
    ops.close()
