"""The web service over the real services: sign-in by emailed one-time link, sessions, CSRF,
isolation between customers enforced by the services' own APIs, languages, and the buyer's
journey from catalog to a shipped order (through HTTP like a browser without JavaScript; the
browser tier in tests/browser drives Chromium through the same pages). End-to-end: it runs every
service the pages call (the harness stops them when the whole-stack tiers end, tests/conftest.py)."""
from __future__ import annotations

import json
import re

import httpx
import psycopg
import pytest

from tests.conftest import wait_until
from tests.web_stack import csrf_of, seed_customer, sign_in, start_web

pytestmark = pytest.mark.integration
MAX_PAGE = 200 * 1024


@pytest.fixture(scope="module")
def web(harness, cfg, stack, unique_module):
    from demo.seed import seed_catalog
    w = start_web(harness, cfg, stack)
    with harness.client("cart", "operator", "web-test-operator") as ops:
        seed_catalog(ops)
    u = unique_module
    for c in ("a", "b"):
        seed_customer(harness, f"cust-{c}-{u}", f"sp-{u}", f"sp-{u}@example.com")
        w.add_person(c, email=f"buyer-{c}-{u}@example.com", name=f"Buyer {c.upper()}", role="customer",
                     subject=f"cust-{c}-{u}", language="en")
    w.add_person("sp", email=f"sp-{u}@example.com", name="Sam Seller", role="salesperson", subject=f"sp-{u}")
    w.add_person("wh", email=f"wh-{u}@example.com", name="Wanda Warehouse", role="warehouse", subject="dc-1")
    w.add_person("op", email=f"op-{u}@example.com", name="Olga Operator", role="operator", subject="olga")
    w.add_person("moved", email=f"moved-{u}@example.com", name="Mo", role="customer", subject=f"cust-b-{u}")
    w.add_person("out", email=f"out-{u}@example.com", name="Otto", role="customer", subject=f"cust-b-{u}")
    w.add_person("es", email=f"es-{u}@example.com", name="Elena", role="customer", subject=f"cust-a-{u}",
                 language="es", time_zone="Europe/Madrid")
    return w


@pytest.fixture(scope="module")
def unique_module():
    import uuid
    return uuid.uuid4().hex[:8]


def browser(web) -> httpx.Client:
    return httpx.Client(base_url=web.url, timeout=30, follow_redirects=False)


_SIGNED_IN: dict = {}


def signed_in(web, who: str) -> httpx.Client:
    """One session per person for the module: an address may ask for 3 links per 15 minutes."""
    if (web.url, who) not in _SIGNED_IN:
        _SIGNED_IN[(web.url, who)] = sign_in(web, browser(web), web.people[who]["email"])
    return _SIGNED_IN[(web.url, who)]


def post(client: httpx.Client, page: str, action: str, data: dict) -> httpx.Response:
    """Sends a form the way the page does: with the CSRF token the page carries."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={**data, "csrf_token": token})


def test_sign_in_link_is_single_use_and_the_session_cookie_is_httponly_samesite(web):
    email = web.people["a"]["email"]
    c = browser(web)
    form = c.get("/signin")
    assert form.status_code == 200 and "sb_session" in form.headers["set-cookie"]
    cookie = form.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # plain HTTP here
    before = len(web.links_for(email))
    assert c.post("/signin", data={"email": email, "csrf_token": csrf_of(form.text)}).status_code == 303
    link = web.wait_link(email, before)
    path = "/signin/" + link.rsplit("/", 1)[1]
    page = c.get(path)
    assert page.status_code == 200 and email in page.text   # opening the link alone signs nobody in
    assert c.get("/shop").status_code == 303
    used = c.post(path, data={"csrf_token": csrf_of(page.text)})
    assert used.status_code == 303 and used.headers["location"] == "/shop"
    assert c.get("/shop").status_code == 200
    # a second use, from another browser, does nothing
    other = browser(web)
    again = other.get(path)
    assert again.status_code == 410
    assert other.post(path, data={"csrf_token": csrf_of(again.text)}).status_code == 410
    assert other.get("/shop").status_code == 303


def test_expired_link_does_not_sign_in(web):
    email = web.people["b"]["email"]
    c = browser(web)
    before = len(web.links_for(email))
    assert post(c, "/signin", "/signin", {"email": email}).status_code == 303
    link = web.wait_link(email, before)
    # time passes beyond the link's life (the web database's own clock column, as the expiry uses it)
    with psycopg.connect(web.proc.database_url) as conn:
        conn.execute("UPDATE signin_tokens SET expires_at = now() - interval '1 second' WHERE email = %s "
                     "AND used_at IS NULL", (email,))
    path = "/signin/" + link.rsplit("/", 1)[1]
    page = c.get(path)
    assert page.status_code == 410
    assert c.post(path, data={"csrf_token": csrf_of(page.text)}).status_code == 410


def test_sign_in_requests_are_rate_limited_and_unknown_addresses_get_the_same_answer(web, unique_module):
    c = browser(web)
    stranger = f"nobody-{unique_module}@example.com"
    answers = [post(c, "/signin", "/signin", {"email": stranger}) for _ in range(3)]
    assert [a.status_code for a in answers] == [303, 303, 303]
    assert all(a.headers["location"] == "/signin?sent=1" for a in answers)
    assert web.links_for(stranger) == []
    limited = post(c, "/signin", "/signin", {"email": stranger})
    assert limited.status_code == 429


def test_forms_without_the_csrf_token_are_refused(web):
    c = signed_in(web, "a")
    assert c.post("/cart/lines", data={"sku": "BULB-LED-9W", "quantity": "1"}).status_code == 403
    assert c.post("/cart/lines", data={"sku": "BULB-LED-9W", "quantity": "1", "csrf_token": "forged"}).status_code == 403
    assert c.post("/signout", data={}).status_code == 403


def test_account_checkout_to_shipped_order_and_another_customer_sees_none_of_it(web, harness):
    a = signed_in(web, "a")
    shop = a.get("/shop?q=LED")
    assert shop.status_code == 200 and "BULB-LED-9W" in shop.text and len(shop.content) < MAX_PAGE
    assert post(a, "/shop", "/cart/lines", {"sku": "BULB-LED-9W", "quantity": "10"}).status_code == 303
    cart = a.get("/cart")
    assert "€18.50" in cart.text  # 10 × 1.85, priced by the cart service
    checkout = a.get("/checkout")
    assert "Available credit" in checkout.text and "€5,000.00" in checkout.text
    form = {"recipient": "Ana Buyer", "address1": "ul. Długa 1", "city": "Kraków", "postal_code": "30-001",
            "country": "PL", "phone": "+48 12 000 00 00", "email": web.people["a"]["email"],
            "payment_mode": "account", "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"',
                                                                     checkout.text).group(1)}
    placed = a.post("/checkout", data={**form, "csrf_token": csrf_of(checkout.text)})
    assert placed.status_code == 303, placed.text
    order_path = placed.headers["location"].split("?")[0]
    order_id = order_path.rsplit("/", 1)[1]
    page = wait_until(lambda: (p := a.get(order_path)).status_code == 200 and 'id="confirmation-number"' in p.text
                      and p, timeout=60, message="the confirmation number on the order page")
    assert "Placed" in page.text and "Paid" in page.text and "Confirmed" in page.text

    # the other customer's buyer: the orders API answers their key with 404, so does the page
    b = signed_in(web, "b")
    assert b.get(order_path).status_code == 404
    assert order_id not in b.get("/orders").text
    # and a customer is no salesperson or warehouse clerk
    assert b.get("/console").status_code == 403 and b.get("/ops").status_code == 403

    wh = signed_in(web, "wh")
    listing = wh.get(f"/ops?customer_id={web.people['a']['subject']}")
    assert order_id in listing.text
    shipped = wh.post(f"/ops/orders/{order_id}/ship", data={
        "carrier": "DHL", "tracking_number": f"TRK-{order_id[-8:]}", "distribution_centre": "DC-1",
        "customer_id": web.people["a"]["subject"], "csrf_token": csrf_of(listing.text)})
    assert shipped.status_code == 303, shipped.text
    final = a.get(order_path)
    assert "Shipped" in final.text and f"TRK-{order_id[-8:]}" in final.text and "DHL" in final.text
    assert order_id in a.get("/orders").text


def test_card_checkout_posts_only_a_gateway_token(web):
    a = signed_in(web, "a")
    post(a, "/shop", "/cart/lines", {"sku": "SWITCH-1G-WHT", "quantity": "2"})
    checkout = a.get("/checkout")
    assert 'name="card_number"' not in checkout.text and "tok_visa_approved" in checkout.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', checkout.text).group(1)
    placed = a.post("/checkout", data={
        "recipient": "Ana", "address1": "Main 1", "city": "Split", "postal_code": "21000", "country": "HR",
        "phone": "+385 21 000", "email": web.people["a"]["email"], "payment_mode": "card",
        "card_token": "tok_visa_approved", "idempotency_key": key, "csrf_token": csrf_of(checkout.text)})
    assert placed.status_code == 303
    path = placed.headers["location"].split("?")[0]
    page = wait_until(lambda: (p := a.get(path)).status_code == 200 and 'id="confirmation-number"' in p.text and p,
                      timeout=60, message="a card order confirmed")
    assert "By card" in page.text


def test_standing_order_from_checkout_can_be_skipped_and_is_invisible_to_the_other_customer(web):
    a = signed_in(web, "a")
    post(a, "/shop", "/cart/lines", {"sku": "TUBE-T8-1500", "quantity": "5"})
    checkout = a.get("/checkout")
    start = re.search(r'name="start_date" type="date" value="([^"]+)"', checkout.text).group(1)
    placed = a.post("/checkout", data={
        "recipient": "Ana", "address1": "Main 1", "city": "Split", "postal_code": "21000", "country": "HR",
        "phone": "+385 21 000", "email": web.people["a"]["email"], "payment_mode": "account",
        "repeat": "true", "every": "2", "unit": "weeks", "start_date": start,
        "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', checkout.text).group(1),
        "csrf_token": csrf_of(checkout.text)})
    assert placed.status_code == 303 and placed.headers["location"].startswith("/standing-orders")
    page = wait_until(lambda: "skip-next" in (p := a.get("/standing-orders")).text and p, timeout=30,
                      message="the standing order listed")
    so_id = re.search(r'/standing-orders/([^/"]+)/skip-next', page.text).group(1)
    b = signed_in(web, "b")
    assert so_id not in b.get("/standing-orders").text
    assert post(b, "/standing-orders", f"/standing-orders/{so_id}/cancel", {}).status_code == 404
    changed = post(a, "/standing-orders", f"/standing-orders/{so_id}/lines",
                   {"sku": ["TUBE-T8-1500"], "quantity": ["8"]})
    assert changed.status_code == 303
    assert 'value="8"' in a.get("/standing-orders").text.split(so_id, 1)[1].split("</section>")[0]
    first = re.findall(r"<li>#(\d+)", page.text)[0]
    assert post(a, "/standing-orders", f"/standing-orders/{so_id}/skip-next", {}).status_code == 303
    after = a.get("/standing-orders").text
    assert f"<li>#{first} " not in after.split(so_id, 1)[1].split("</section>")[0]


def test_salesperson_logs_a_call_and_schedules_a_task(web):
    sp = signed_in(web, "sp")
    customer = web.people["a"]["subject"]
    page = sp.get(f"/console/customers/{customer}")
    assert page.status_code == 200 and "Ana Buyer" in page.text
    done = sp.post(f"/console/customers/{customer}/contacts", data={
        "channel": "phone_call", "summary": "Asked about LED tubes", "contact_name": "Ana",
        "csrf_token": csrf_of(page.text)})
    assert done.status_code == 303
    assert "Asked about LED tubes" in sp.get(f"/console/customers/{customer}").text
    task = sp.post(f"/console/customers/{customer}/tasks", data={
        "title": "Send the LED tube offer", "due": "2099-01-05T09:00", "kind": "custom",
        "csrf_token": csrf_of(page.text)})
    assert task.status_code == 303, task.text
    profile = sp.get(f"/console/customers/{customer}").text
    row = next(r for r in profile.split("<tr>") if "Send the LED tube offer" in r)
    task_id = re.search(r"/console/tasks/([^/]+)/snooze", row).group(1)
    back = f"/console/customers/{customer}"
    assert sp.post(f"/console/tasks/{task_id}/snooze", data={"due": "2099-02-01T10:00", "back": back,
                                                            "csrf_token": csrf_of(profile)}).status_code == 303
    row = next(r for r in sp.get(back).text.split("<tr>") if "Send the LED tube offer" in r)
    assert "Feb 1, 2099, 10:00" in row   # 10:00 in the salesperson's zone (Europe/Warsaw)
    assert sp.post(f"/console/tasks/{task_id}/complete", data={"back": back,
                                                             "csrf_token": csrf_of(profile)}).status_code == 303
    assert "Send the LED tube offer" not in sp.get(back).text.split("<h2>Timeline")[0]
    assert sp.get("/console").status_code == 200
    assert sp.get("/ops/dead-letters").status_code == 403


def test_pages_follow_the_profile_language_or_the_browser(web):
    pl = browser(web).get("/signin", headers={"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.5"})
    assert '<html lang="pl">' in pl.text and "Logowanie" in pl.text
    es = signed_in(web, "es")
    shop = es.get("/shop")
    assert '<html lang="es">' in shop.text and "Añadir al carrito" in shop.text and "1,85\xa0€" in shop.text
    chosen = post(es, "/shop", "/language", {"language": "vi", "back": "/shop"})
    assert chosen.status_code == 303
    assert "Thêm vào giỏ" in es.get("/shop").text


def test_sign_out_ends_the_session_and_revokes_its_api_key(web, harness):
    c = signed_in(web, "out")
    before = set(json.loads(harness.keys_file.read_text()))
    assert post(c, "/shop", "/signout", {}).status_code == 303
    after = set(json.loads(harness.keys_file.read_text()))
    assert len(before - after) == 1
    assert c.get("/shop").status_code == 303


def test_operator_sees_dead_letters_health_and_people(web):
    op = signed_in(web, "op")
    health = op.get("/ops/health")
    assert health.status_code == 200 and health.text.count(">OK<") >= 5
    people = op.get("/ops/people")
    assert web.people["wh"]["email"] in people.text
    added = op.post("/ops/people", data={"email": "New.Buyer@Example.com", "name": "New", "role": "customer",
                                         "subject": "cust-new", "language": "hr", "time_zone": "Europe/Zagreb",
                                         "active": "true", "csrf_token": csrf_of(people.text)})
    assert added.status_code == 303
    assert "new.buyer@example.com" in op.get("/ops/people").text
    # a person whose subject changes signs in again: their session's key acted for the old one
    moved = signed_in(web, "moved")
    assert moved.get("/shop").status_code == 200
    person = web.people["moved"]
    assert op.post("/ops/people", data={**{k: person[k] for k in ("email", "name", "role", "language", "time_zone")},
                                        "subject": web.people["a"]["subject"], "active": "true",
                                        "csrf_token": csrf_of(people.text)}).status_code == 303
    assert moved.get("/shop").status_code == 303
    assert op.get("/ops/dead-letters").status_code == 200



def test_operator_sees_set_aside_items_with_their_reasons_in_their_time_zone(web, harness):
    from datetime import datetime, timezone
    from uuid import uuid4

    from services.web.i18n import Formats
    event_id, at = f"web-aside-{uuid4().hex[:10]}", datetime.now(timezone.utc).replace(microsecond=0)
    reason = f"ValueError: <script>alert(1)</script> unknown SKU {event_id}"
    with psycopg.connect(harness.procs["orders"].database_url) as conn:  # a record the retry worker gave up on
        conn.execute("INSERT INTO retry_records (source, event_id, group_key, topic, partition, \"offset\", state, "
                     "attempts, last_error, resolved_at) VALUES ('orders', %s, %s, 'OrderPlaced', 0, 0, "
                     "'dead_lettered', 5, %s, %s)", (event_id, event_id, reason, at))
    op = signed_in(web, "op")
    page = op.get("/ops/set-aside")
    assert page.status_code == 200 and len(page.content) < MAX_PAGE
    html = page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; unknown SKU " + event_id in html
    assert "<script>" not in html
    row = html[html.index(event_id):html.index("</tr>", html.index(event_id))]
    assert Formats("en", web.people["op"]["time_zone"]).when(at.isoformat()) in row
    for service in ("cart", "payments", "orders", "notifications", "crm", "scheduler", "web"):
        assert f'id="aside-{service}"' in html
    assert "Records given up after retries" in html and "Failed emails" in html  # notifications' own listing
    assert 'href="/ops/set-aside"' in op.get("/ops/dead-letters").text
    # a buyer's session does not reach it
    assert signed_in(web, "a").get("/ops/set-aside").status_code == 403

def test_operator_adds_a_product_and_changes_a_credit_limit(web, unique_module):
    op = signed_in(web, "op")
    catalog = op.get("/ops/catalog")
    sku = f"WEBTEST-{unique_module.upper()}"
    saved = op.post("/ops/catalog", data={"sku": sku, "name": "Web test lamp", "price": "12,30", "currency": "EUR",
                                          "active": "true", "csrf_token": csrf_of(catalog.text)})
    assert saved.status_code == 303, saved.text
    a = signed_in(web, "a")
    assert "€12.30" in a.get(f"/shop/products/{sku}").text
    customer = web.people["b"]["subject"]
    page = op.get(f"/ops/accounts?customer_id={customer}")
    assert "€5,000.00" in page.text
    changed = op.post(f"/ops/accounts/{customer}", data={"credit_limit": "7500.00", "currency": "EUR",
                                                         "payment_terms_days": "45", "status": "active",
                                                         "csrf_token": csrf_of(page.text)})
    assert changed.status_code == 303
    b = signed_in(web, "b")
    account = b.get("/account").text
    assert "€7,500.00" in account and "net 45 days" in account
    # a buyer may not change the catalog: the cart API refuses their key, the page says so
    refused = a.post("/ops/catalog", data={"sku": sku, "name": "x", "price": "1", "currency": "EUR",
                                           "csrf_token": csrf_of(a.get("/shop").text)})
    assert refused.status_code == 403
