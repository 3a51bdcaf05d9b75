"""Demo flow: the CRM keeps a salesperson close to a customer.

Ana Kovač (Zagreb) gets a profile for Adriatic Hotels with two key contacts. Contacts arrive from
her (API) and from upstream systems (telephony, website tracking, mail gateway) as events. The
hotel's EDI orders flow through the whole system; each shipment gives Ana a follow-up call, and
three weekly orders make a cadence, so she gets a "remind them to reorder" task. She completes one
follow-up at once; the clock moves on three days and the scheduler fires the other reminders:
the emails land in her mailbox, none for the task she already completed. Last, the timeline.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from email.header import decode_header, make_header
from zoneinfo import ZoneInfo

from confluent_kafka import Producer
from rich.table import Table
from rich.text import Text

from demo.context import DemoContext
from schemas import ContactLogged, Event, OrderPlaced, envelope, to_record

CUSTOMER = "adriatic-hotels"   # the checkout flow's customer with a supplier account
ANA = {"id": "ana.kovac", "email": "ana.kovac@salesbus.example", "time_zone": "Europe/Zagreb", "language": "hr"}
ZAGREB = ZoneInfo(ANA["time_zone"])
PROFILE = {
    "name": "Adriatic Hotels d.o.o.", "segment": "hospitality", "language": "hr", "time_zone": "Europe/Zagreb",
    "salesperson": ANA,
    "primary_contact": {"name": "Ivana Horvat", "role": "head of purchasing",
                        "email": "ivana.horvat@adriatic-hotels.example", "phone": "+385 21 555 0101"},
    "contacts": [
        {"name": "Marko Babić", "role": "facilities manager", "email": "marko.babic@adriatic-hotels.example",
         "phone": "+385 21 555 0102"},
    ],
}


def publish(ctx: DemoContext, events: list[Event], source: str) -> None:
    """What an upstream system does: put events straight on the bus."""
    producer = Producer(ctx.cfg.kafka_common())
    for ev in events:
        key, value, headers = to_record(envelope(ev, source=source))
        producer.produce(ev.event_type(), key=key, value=value, headers=headers)
    producer.flush(10)


def edi_order(order_id: str, placed_at: datetime) -> OrderPlaced:
    price, qty = Decimal("1.85"), 120
    return OrderPlaced.model_validate({
        "order_id": order_id, "customer_id": CUSTOMER, "channel": "edi", "language": "hr",
        "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb 9W E27", "quantity": qty,
                   "unit_price": {"amount": str(price), "currency": "EUR"}}],
        "total": {"amount": str(price * qty), "currency": "EUR"},
        "delivery": {"recipient": "Adriatic Hotels d.o.o. — goods in", "address_lines": ["Obala 12"], "city": "Split",
                     "postal_code": "21000", "country": "HR", "phone": "+385 21 555 0100",
                     "email": "nabava@adriatic-hotels.example"},
        "payment": {"mode": "account"}, "placed_at": placed_at})


def local(ts: str) -> str:
    return datetime.fromisoformat(ts).astimezone(ZAGREB).strftime("%d %b %H:%M")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def subject(msg) -> str:
    return str(make_header(decode_header(msg.get("Subject", ""))))


def run(ctx: DemoContext) -> None:
    ctx.console.rule("[bold]3. CRM: a salesperson close to her customer")
    ana = ctx.client("crm", "salesperson", ANA["id"], email=ANA["email"])
    r = ana.post("/customers", json={"customer_id": CUSTOMER, **PROFILE})
    if r.status_code == 409:
        r = ana.put(f"/customers/{CUSTOMER}", json=PROFILE)
    if not ctx.check(r.status_code in (200, 201), f"create the profile: {r.status_code} {r.text[:200]}"):
        return
    show_profile(ctx, r.json())

    log_contacts(ctx, ana)
    now = ctx.clock.now()
    orders = [f"edi-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    publish(ctx, [edi_order(o, now - timedelta(days=d)) for o, d in zip(orders, (14, 7, 0))], "edi-gateway")
    ctx.console.print(f"EDI gateway placed three weekly orders ({', '.join(orders)}); the system pays, confirms "
                      "and ships them")

    def tasks(due: str = "all") -> list[dict]:
        return ana.get("/me/tasks", params={"due": due, "limit": 200}).json()["items"]

    def of_kind(kind: str) -> list[dict]:
        return [t for t in tasks() if t["customer_id"] == CUSTOMER and t["kind"] == kind]

    ctx.wait_for(lambda: len(of_kind("order_follow_up")) >= 3, 90, "a follow-up task per shipped order")
    ctx.wait_for(lambda: of_kind("reorder_call"), 60, "the reorder task from the ordering cadence")
    show_tasks(ctx, "Ana's open tasks", tasks())
    reorder = of_kind("reorder_call")
    ctx.check(len(reorder) == 1, "one reorder call from the cadence (3 orders a week apart)")
    ctx.check(all("Follow up on receipt" in t["title"] for t in of_kind("order_follow_up")),
              "follow-up tasks say what to follow up")

    done = of_kind("order_follow_up")[0]
    r = ana.post(f"/tasks/{done['task_id']}/complete", json={"note": "Ivana: delivery complete, no breakages"})
    ctx.check(r.status_code == 200 and r.json()["status"] == "done", f"complete a follow-up: {r.text[:200]}")
    ctx.console.print(f"Ana completed “{done['title']}” right away: its reminder is withdrawn")

    advance = timedelta(days=3, hours=1)
    ctx.clock.advance(advance)
    ctx.console.print(f"⏩ the clock moves on {advance}; reminders fire {lead_hours()} h before each task is due")
    expected = [t for t in tasks() if t["customer_id"] == CUSTOMER
                and datetime.fromisoformat(t["due_at"]) - timedelta(hours=lead_hours()) <= ctx.clock.now()]

    def ana_mail() -> list:
        return [m for m in ctx.mail() if m["To"] == ANA["email"] and m.get("X-Salesbus-Kind") == "reminder"]

    ctx.wait_for(lambda: len(ana_mail()) >= len(expected), 90, f"{len(expected)} reminder emails to Ana")
    mails = ana_mail()
    for m in mails:
        ctx.console.print(f"  ✉ to {m['To']} [{m.get('X-Salesbus-Language', '?')}]  {subject(m)}")
    ctx.check(any("reorder" in subject(m) for m in mails), "the reorder reminder reached Ana's mailbox")
    ctx.check(not any(done["title"] in subject(m) for m in mails), "no reminder for the completed task")
    today = ana.get("/me/tasks", params={"due": "today"}).json()
    ctx.console.print(f"due today for Ana ({today['today']}, {today['time_zone']}): "
                      + (", ".join(t["title"] for t in today["items"]) or "nothing"))

    show_timeline(ctx, ana)


def lead_hours() -> float:
    from runtime.config import Settings
    return Settings().crm_reminder_lead_hours


def log_contacts(ctx: DemoContext, ana) -> None:
    now = ctx.clock.now()
    r = ana.post(f"/customers/{CUSTOMER}/contacts", json={
        "channel": "site_visit", "occurred_at": (now - timedelta(days=20)).isoformat(), "contact_name": "Marko Babić",
        "summary": "Walked the renovated east wing: 300 rooms to relamp before the season"})
    ctx.check(r.status_code == 201, f"log a site visit: {r.status_code} {r.text[:200]}")
    r = ana.post(f"/customers/{CUSTOMER}/contacts", json={
        "channel": "phone_call", "contact_name": "Ivana Horvat", "summary": "Agreed weekly EDI orders of LED bulbs"})
    ctx.check(r.status_code == 201, f"log a phone call: {r.status_code} {r.text[:200]}")
    upstream = [
        (ContactLogged(entry_id=str(uuid.uuid4()), customer_id=CUSTOMER, channel="email_in",
                       occurred_at=now - timedelta(days=16), contact_name="Ivana Horvat",
                       summary="Asked for a quote on 300 LED tubes", source="mail-gateway"), "mail-gateway"),
        (ContactLogged(entry_id=str(uuid.uuid4()), customer_id=CUSTOMER, channel="phone_call",
                       occurred_at=now - timedelta(days=15), contact_name="Ivana Horvat", salesperson_id=ANA["id"],
                       summary="Inbound call, 6 min", source="telephony"), "telephony"),
        (ContactLogged(entry_id=str(uuid.uuid4()), customer_id=CUSTOMER, channel="web_visit",
                       occurred_at=now - timedelta(hours=3), summary="Viewed T8 tubes and the bulk price list",
                       source="website"), "website-tracking"),
    ]
    for ev, source in upstream:
        publish(ctx, [ev], source)
    ctx.console.print("contacts logged: a site visit and a call by Ana (API), an email, a call and a web visit "
                      "from the mail gateway, telephony and website tracking (events)")


def show_profile(ctx: DemoContext, p: dict) -> None:
    sp = p["salesperson"]
    ctx.console.print(f"profile [bold]{p['name']}[/bold] ({p['customer_id']}, {p['segment']}, {p['language']}, "
                      f"{p['time_zone']}) — owner {sp['id']} <{sp['email']}> in {sp['time_zone']}")
    for c in p["contacts"]:
        ctx.console.print(f"  {'★' if c['primary'] else '·'} {c['name']}, {c['role']}, {c['email']}, {c['phone']}")
    acct = p.get("supplier_account")
    if acct:
        ctx.console.print(f"  supplier account: {acct['status']}, limit {acct['credit_limit']} {acct['currency']}, "
                          f"net {acct['payment_terms_days']}, open balance {acct['open_balance']}")
    ctx.check(len(p["contacts"]) == 2, "the profile has two key contacts")


def show_tasks(ctx: DemoContext, title: str, rows: list[dict]) -> None:
    table = Table(title=title, header_style="dim", box=None, padding=(0, 1))
    for col in ("due (Zagreb)", "kind", "task"):
        table.add_column(col, no_wrap=True)
    for t in rows:
        table.add_row(local(t["due_at"]), t["kind"], Text(clip(t["title"], max(30, ctx.console.width - 36))))
    ctx.console.print(table)


def show_timeline(ctx: DemoContext, ana) -> None:
    def page() -> dict:
        return ana.get(f"/customers/{CUSTOMER}/timeline", params={"limit": 40, "order": "oldest"}).json()

    ctx.wait_for(lambda: {"contact", "email", "order"} <= {e["kind"] for e in page()["items"]}, 60,
                 "contacts, emails and order milestones on the timeline")
    tl = page()
    table = Table(title=f"Timeline of {PROFILE['name']} ({tl['total']} entries, oldest first)", header_style="dim",
                  box=None, padding=(0, 1))
    for col in ("Zagreb time", "kind", "what", "summary"):
        table.add_column(col, no_wrap=True)
    room = max(30, ctx.console.width - 42)
    for e in tl["items"]:
        upstream = e["kind"] == "contact" and e["source"] != "crm"
        summary = (f"[{e['source']}] " if upstream else "") + e["summary"]
        table.add_row(local(e["occurred_at"]), e["kind"], clip(e["subtype"], 14), Text(clip(summary, room)))
    ctx.console.print(table)
    times = [e["occurred_at"] for e in tl["items"]]
    ctx.check(times == sorted(times, key=datetime.fromisoformat), "the timeline is in time order")
    contacts = [e for e in tl["items"] if e["kind"] == "contact"]
    ctx.check(len(contacts) == 5, f"five contacts on the timeline, our own calls not doubled (saw {len(contacts)})")
