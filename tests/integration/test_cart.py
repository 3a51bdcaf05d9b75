"""The cart service through its real HTTP API, with what it publishes read back from the broker."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from runtime.config import with_dbname
from runtime.tap import tap
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

DELIVERY = {"recipient": "Maintenance dept.", "address_lines": ["Obala 12"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 555 010", "email": "buyer@example.hr"}
CHECKOUT = {"delivery": DELIVERY, "payment": {"mode": "account"}, "language": "hr"}


@pytest.fixture(scope="module")
def operator(harness):
    harness.start("cart")
    with harness.client("cart", "operator", "ops-1") as client:
        yield client


@pytest.fixture
def customer(harness, operator, unique):
    with harness.client("cart", "customer", f"cust-{unique}") as client:
        yield client


def put_product(operator, sku: str, price: str, currency: str = "EUR", active: bool = True, name: str = ""):
    r = operator.put(f"/products/{sku}", json={"name": name or f"Product {sku}", "description": "test item",
                                                "unit_price": {"amount": price, "currency": currency},
                                                "active": active})
    assert r.status_code in (200, 201), r.text
    return r.json()


def new_cart(client) -> str:
    r = client.post("/carts")
    assert r.status_code == 201, r.text
    return r.json()["cart_id"]


def checkout(client, cart_id: str, body: dict, key: str | None = None):
    return client.post(f"/carts/{cart_id}/checkout", json=body,
                       headers={"Idempotency-Key": key or str(uuid.uuid4())})


def published(cfg, topic: str, key: str) -> list[dict]:
    return [rec.event() for rec in tap(cfg.kafka_common(), [topic], follow=False, keys={key})]


def all_published(cfg, topic: str, key: str) -> list[dict]:
    """Every record for `key` once the cart's outbox has nothing left to send for it."""
    def drained():
        with psycopg.connect(with_dbname(cfg.database_url, "cart")) as conn:
            rows = conn.execute("SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FROM outbox "
                                "WHERE topic = %s AND key = %s", (topic, key)).fetchone()
        return rows[1] > 0 and rows[0] == 0
    wait_until(drained, timeout=60, message=f"{topic} {key} to leave the outbox")
    return wait_until(lambda: published(cfg, topic, key), timeout=60, message=f"{topic} {key} on the broker")


def test_catalog_create_update_search_and_changes_published(cfg, operator, customer, unique):
    sku = f"T{unique.upper()}-BULB"
    body = {"name": f"LED bulb {unique}", "description": "warm white",
            "unit_price": {"amount": "1.85", "currency": "EUR"}}
    assert operator.put(f"/products/{sku}", json=body).status_code == 201
    assert operator.put(f"/products/{sku}", json=body).status_code == 200  # unchanged: no event
    changed = operator.put(f"/products/{sku}", json={**body, "unit_price": {"amount": "1.95", "currency": "EUR"}})
    assert changed.status_code == 200 and changed.json()["unit_price"] == {"amount": "1.95", "currency": "EUR"}
    assert customer.get(f"/products/{sku}").json()["unit_price"]["amount"] == "1.95"
    assert customer.put(f"/products/{sku}", json=body).status_code == 403

    events = all_published(cfg, "ProductChanged", sku)
    assert [e["data"]["unit_price"]["amount"] for e in events] == ["1.85", "1.95"]

    for extra in ("A", "B", "C"):
        put_product(operator, f"T{unique.upper()}-{extra}", "2.00", name=f"Cable {unique} {extra}")
    put_product(operator, f"T{unique.upper()}-OLD", "2.00", name=f"Cable {unique} old", active=False)
    page = customer.get("/products", params={"q": f"cable {unique}", "limit": 2}).json()
    assert (page["total"], len(page["items"])) == (3, 2)  # the inactive one is hidden
    last = customer.get(page["next"]).json()  # the next link keeps the query
    assert [p["sku"] for p in last["items"]] == [f"T{unique.upper()}-C"] and last["next"] is None
    assert operator.get("/products", params={"q": f"cable {unique}"}).json()["total"] == 4
    assert customer.get("/products", params={"q": sku.lower()}).json()["items"][0]["sku"] == sku
    assert customer.get("/products", params={"q": "warm WHITE"}).json()["total"] >= 1
    assert customer.get(f"/products/T{unique.upper()}-NONE").status_code == 404


@pytest.mark.parametrize("sku, price, status, reason", [
    ("bulb-lower", {"amount": "1.00", "currency": "EUR"}, 422, '"loc":["path","sku"]'),
    ("OK-SKU", {"amount": "1.855", "currency": "EUR"}, 422, '"loc":["body","unit_price","amount"]'),   # 2 decimals
    ("OK-SKU", {"amount": 1.85, "currency": "EUR"}, 422, "valid string"),                  # never a float
    ("OK-SKU", {"amount": "1.00", "currency": "JPY"}, 409, "does not sell in JPY"),
    ("OK-SKU", {"amount": "0.00", "currency": "EUR"}, 422, '"loc":["body","unit_price","amount"]'),    # above zero
])
def test_bad_product_is_refused_with_a_reason(operator, sku, price, status, reason):
    """The rules a price must follow are in the schema (pattern), so they answer validation-failed;
    a currency the store does not sell is its configuration's refusal (409)."""
    r = operator.put(f"/products/{sku}", json={"name": "x", "unit_price": price})
    assert r.status_code == status and reason in r.text, r.text


def test_cart_totals_are_exact_and_one_currency(operator, customer, unique):
    tenth, tube, usd = (f"T{unique.upper()}-{s}" for s in ("TENTH", "TUBE", "USD"))
    put_product(operator, tenth, "0.10")
    put_product(operator, tube, "3.40")
    put_product(operator, usd, "5.00", currency="USD")
    cart_id = new_cart(customer)
    cart = customer.put(f"/carts/{cart_id}/lines/{tenth}", json={"quantity": 3}).json()
    assert cart["lines"][0]["line_total"] == {"amount": "0.30", "currency": "EUR"}
    assert cart["total"] == {"amount": "0.30", "currency": "EUR"}
    cart = customer.put(f"/carts/{cart_id}/lines/{tube}", json={"quantity": 2}).json()
    assert cart["total"]["amount"] == "7.10"
    cart = customer.put(f"/carts/{cart_id}/lines/{tenth}", json={"quantity": 7}).json()  # set, not add
    assert cart["total"]["amount"] == "7.50" and len(cart["lines"]) == 2

    other = customer.put(f"/carts/{cart_id}/lines/{usd}", json={"quantity": 1})
    assert other.status_code == 409 and "priced in USD but this cart is in EUR" in other.text
    for bad in (0, -1, 2.5, "many"):
        assert customer.put(f"/carts/{cart_id}/lines/{tube}", json={"quantity": bad}).status_code == 422
    unknown = customer.put(f"/carts/{cart_id}/lines/T{unique.upper()}-NOPE", json={"quantity": 1})
    assert unknown.status_code == 404 and "no product" in unknown.text
    assert customer.put(f"/carts/{cart_id}/lines/{tube}", json={}).status_code == 422

    cart = customer.delete(f"/carts/{cart_id}/lines/{tube}").json()
    assert cart["total"]["amount"] == "0.70"
    assert customer.delete(f"/carts/{cart_id}/lines/{tube}").status_code == 404
    assert customer.get(f"/carts/{cart_id}").json()["total"]["amount"] == "0.70"


def test_inactive_product_is_refused_in_cart_and_at_checkout(operator, customer, unique):
    gone, kept = f"T{unique.upper()}-GONE", f"T{unique.upper()}-KEPT"
    put_product(operator, gone, "1.00", active=False)
    put_product(operator, kept, "1.00")
    cart_id = new_cart(customer)
    r = customer.put(f"/carts/{cart_id}/lines/{gone}", json={"quantity": 1})
    assert r.status_code == 409 and "no longer sold" in r.text
    customer.put(f"/carts/{cart_id}/lines/{kept}", json={"quantity": 1}).raise_for_status()
    put_product(operator, kept, "1.00", active=False)  # withdrawn while in the cart
    assert customer.get(f"/carts/{cart_id}").json()["lines"][0]["active"] is False
    r = checkout(customer, cart_id, CHECKOUT)
    assert r.status_code == 409 and f"{kept} is no longer sold" in r.text
    assert customer.get(f"/carts/{cart_id}").json()["status"] == "open"


def test_checkout_places_one_order_and_a_retry_returns_it_again(cfg, operator, customer, unique):
    bulb = f"T{unique.upper()}-BULB"
    put_product(operator, bulb, "1.85")
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{bulb}", json={"quantity": 40}).raise_for_status()
    put_product(operator, bulb, "1.79")  # the price at checkout is the one that counts
    key = str(uuid.uuid4())

    first = checkout(customer, cart_id, CHECKOUT, key)
    assert first.status_code == 202, first.text
    order_id = first.json()["order_id"]
    assert first.json()["total"] == {"amount": "71.60", "currency": "EUR"}
    assert first.headers["Location"] == f"/orders/{order_id}"   # on the orders service (docs/api.md)
    # the same body, keys in another order: still the same request
    retry = customer.post(f"/carts/{cart_id}/checkout", content=json.dumps(dict(reversed(CHECKOUT.items()))),
                          headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    assert (retry.status_code, retry.json()) == (202, first.json())
    assert retry.headers.get("Idempotent-Replayed") == "true"

    events = all_published(cfg, "OrderPlaced", order_id)
    assert len(events) == 1, "a retried checkout must not place a second order"
    order = events[0]["data"]
    assert order["customer_id"] == f"cust-{unique}" and order["channel"] == "web" and order["language"] == "hr"
    assert order["lines"] == [{"sku": bulb, "name": f"Product {bulb}", "quantity": 40,
                               "unit_price": {"amount": "1.79", "currency": "EUR"}}]
    assert Decimal(order["total"]["amount"]) == Decimal("71.60") and order["delivery"] == DELIVERY

    different = checkout(customer, cart_id, {**CHECKOUT, "language": "en"}, key)
    assert different.status_code == 409 and "Idempotency-Key" in different.text
    assert checkout(customer, cart_id, CHECKOUT).status_code == 409  # a new key: the cart is already ordered
    assert customer.put(f"/carts/{cart_id}/lines/{bulb}", json={"quantity": 1}).status_code == 409
    cart = customer.get(f"/carts/{cart_id}").json()
    assert cart["status"] == "checked_out" and cart["order_id"] == order_id


def test_concurrent_retries_of_one_checkout_all_get_the_same_order(operator, customer, unique):
    """A double click sends the same key twice at once: both must get the one order, not a 409."""
    from concurrent.futures import ThreadPoolExecutor
    sku = f"T{unique.upper()}-DBL"
    put_product(operator, sku, "1.00")
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 1}).raise_for_status()
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: checkout(customer, cart_id, CHECKOUT, key), range(6)))
    assert [a.status_code for a in answers] == [202] * 6
    assert len({a.json()["order_id"] for a in answers}) == 1


def test_another_customer_cannot_see_or_touch_a_cart(harness, operator, customer, unique):
    sku = f"T{unique.upper()}-MINE"
    put_product(operator, sku, "1.00")
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 2}).raise_for_status()
    with harness.client("cart", "customer", f"intruder-{unique}") as intruder:
        assert intruder.get(f"/carts/{cart_id}").status_code == 404
        assert intruder.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 9}).status_code == 404
        assert intruder.delete(f"/carts/{cart_id}/lines/{sku}").status_code == 404
        assert checkout(intruder, cart_id, CHECKOUT).status_code == 404
        assert cart_id not in [c["cart_id"] for c in intruder.get("/carts").json()["items"]]
    assert operator.get(f"/carts/{cart_id}").status_code == 403  # carts are the customer's own
    cart = customer.get(f"/carts/{cart_id}").json()
    assert (cart["status"], cart["lines"][0]["quantity"]) == ("open", 2)


def test_every_endpoint_needs_a_key(harness, operator):
    import httpx
    anonymous = httpx.Client(base_url=harness.urls["cart"], timeout=30)
    calls = [("GET", "/products"), ("GET", "/products/BULB-LED-9W"), ("PUT", "/products/BULB-LED-9W"),
             ("POST", "/carts"), ("GET", "/carts"), ("GET", "/carts/c-1"), ("PUT", "/carts/c-1/lines/BULB-LED-9W"),
             ("DELETE", "/carts/c-1/lines/BULB-LED-9W"), ("POST", "/carts/c-1/checkout")]
    for method, path in calls:
        assert anonymous.request(method, path, json={}).status_code == 401, f"{method} {path}"
        assert anonymous.request(method, path, json={}, headers={"Authorization": "Bearer sb_nope"}
                                 ).status_code == 401
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/products/{sku}", "/carts/{cart_id}/checkout"} <= set(paths)
    huge = operator.put("/products/HUGE-1", json={"name": "x", "description": "x" * 300_000,
                                                  "unit_price": {"amount": "1.00", "currency": "EUR"}})
    assert huge.status_code == 413


@pytest.mark.parametrize("token", ["4111111111111111", "4111 1111 1111 1111", "tok_4111111111111111 "])
def test_card_number_instead_of_token_is_refused_and_never_echoed(operator, customer, unique, token):
    sku = f"T{unique.upper()}-CARD"
    put_product(operator, sku, "1.00")
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 1}).raise_for_status()
    r = checkout(customer, cart_id, {**CHECKOUT, "payment": {"mode": "card", "card_token": token}})
    assert r.status_code == 422 and "gateway token" in r.text
    assert "4111" not in r.text, "the response repeats the card number"
    assert customer.get(f"/carts/{cart_id}").json()["status"] == "open"


def test_checkout_input_errors_say_what_is_wrong(operator, customer, unique):
    sku = f"T{unique.upper()}-IN"
    put_product(operator, sku, "1.00")
    empty = new_cart(customer)
    r = checkout(customer, empty, CHECKOUT)
    assert r.status_code == 409 and "empty" in r.text
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 1}).raise_for_status()
    no_key = customer.post(f"/carts/{cart_id}/checkout", json=CHECKOUT)
    assert no_key.status_code == 422 and "Idempotency-Key" in no_key.text
    missing_city = {**CHECKOUT, "delivery": {k: v for k, v in DELIVERY.items() if k != "city"}}
    r = checkout(customer, cart_id, missing_city)
    assert r.status_code == 422 and "delivery.city: Field required" in r.json()["detail"]
    assert checkout(customer, cart_id, {**CHECKOUT, "language": "de"}).status_code == 422
    assert checkout(customer, cart_id, {**CHECKOUT, "payment": {"mode": "card"}}).status_code == 422
    assert checkout(customer, f"cart-{unique}", CHECKOUT).status_code == 404


def test_checkout_with_recurrence_requests_a_standing_order(cfg, harness, operator, customer, unique):
    sku = f"T{unique.upper()}-BULB"
    put_product(operator, sku, "1.85")
    cart_id = new_cart(customer)
    customer.put(f"/carts/{cart_id}/lines/{sku}", json={"quantity": 200}).raise_for_status()
    # the shared clock may have been moved ahead by other tests
    start = harness.clock.now().astimezone(ZoneInfo("Europe/Zagreb")).date() + timedelta(days=3)
    terms = {"interval": {"every": 2, "unit": "months"}, "start_date": start.isoformat(),
             "time_zone": "Europe/Zagreb", "max_occurrences": 6}    # the scheduler's shape
    past = checkout(customer, cart_id, {**CHECKOUT, "standing_order": {**terms, "start_date": "2020-01-01"}})
    assert past.status_code == 409 and "in the past" in past.text
    backwards = checkout(customer, cart_id, {**CHECKOUT, "standing_order": {**terms, "end_date": "2020-01-01"}})
    assert (backwards.status_code, backwards.json()["type"]) == (409, "https://salesbus.dev/problems/refused")

    r = checkout(customer, cart_id, {**CHECKOUT, "standing_order": terms})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/standing-orders/{r.json()['standing_order_id']}"
    answer = r.json()
    assert "order_id" not in answer and answer["first_order_on"] == start.isoformat()
    assert answer["total"] == {"amount": "370.00", "currency": "EUR"}
    events = all_published(cfg, "StandingOrderRequested", answer["standing_order_id"])
    assert len(events) == 1
    requested = events[0]["data"]
    assert requested["customer_id"] == f"cust-{unique}"
    assert requested["lines"] == [{"sku": sku, "quantity": 200}]
    assert requested["interval"] == {"every": 2, "unit": "months"}
    assert (requested["start_date"], requested["time_zone"], requested["max_occurrences"]) == \
        (start.isoformat(), "Europe/Zagreb", 6)
    assert customer.get(f"/carts/{cart_id}").json()["standing_order_id"] == answer["standing_order_id"]


def test_demo_seed_puts_a_small_eur_catalog(operator, customer):
    from demo.seed import seed_catalog
    seeded = seed_catalog(operator)
    assert 6 <= len(seeded) <= 8 and {p["unit_price"]["currency"] for p in seeded} == {"EUR"}
    bulb = next(p for p in seeded if p["sku"] == "BULB-LED-9W")
    assert bulb["unit_price"]["amount"] == "1.85" and bulb["active"]
    assert seed_catalog(operator) == seeded  # running it again changes nothing
    assert customer.get("/products/BULB-LED-9W").status_code == 200


def test_a_nul_in_a_cart_id_or_sku_is_refused_not_a_server_error(operator, customer, unique):
    """GET /carts/a%00b answered 500: the cart id went to PostgreSQL, which refuses a NUL in text.
    Every path parameter is now a bounded id (1-200 characters, no control characters): 422, and
    nothing reaches the database."""
    sku = f"T{unique.upper()}-NUL"
    put_product(operator, sku, "1.00")
    cart_id = new_cart(customer)
    assert customer.get("/carts/a%00b").status_code == 422
    assert customer.put(f"/carts/{cart_id}/lines/AB%00C", json={"quantity": 1}).status_code == 422
    assert customer.delete(f"/carts/{cart_id}/lines/AB%00C").status_code == 422
    assert customer.post(f"/carts/{cart_id}%00/checkout", json=CHECKOUT,
                         headers={"Idempotency-Key": str(uuid.uuid4())}).status_code == 422
    assert customer.get(f"/products/{sku}%00").status_code == 422
    assert customer.get("/products", params={"q": "bulb\x00"}).status_code == 422
    assert customer.get(f"/carts/{cart_id}").json()["lines"] == []


def test_a_nul_in_the_product_search_is_refused_not_a_server_error(customer):
    """Issue 16: schemathesis found GET /products?q= with a NUL byte answering 500."""
    r = customer.get("/products", params={"q": "bulb\x00"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "q"], r.text


def test_the_checkout_schema_says_a_card_needs_its_token_and_lists_the_languages(harness, operator):
    """Issue 16: `card_token` was required for card payments but not in the schema, and `language`
    listed none of the six codes it accepts."""
    doc = operator.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    payment = schemas["CheckoutIn"]["properties"]["payment"]
    assert payment["discriminator"]["propertyName"] == "mode"
    assert schemas["CardPaymentIn"]["required"] == ["mode", "card_token"]
    assert "tok_insufficient_funds" in schemas["CardPaymentIn"]["properties"]["card_token"]["description"]
    assert "card_token" not in schemas["AccountPaymentIn"]["properties"]
    assert set(schemas["CheckoutIn"]["properties"]["language"]["enum"]) == {"en", "es", "fr", "pl", "vi", "hr"}
    key = next(p for p in doc["paths"]["/carts/{cart_id}/checkout"]["post"]["parameters"]
               if p["name"] == "Idempotency-Key")
    assert key["required"] is True and key["in"] == "header"


# --- one call carrying its lines (issue 11: the three-call flow is three requests per order) ------

def direct(client, body: dict, key: str | None = None):
    return client.post("/checkout", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def test_a_checkout_carrying_its_lines_places_one_order_as_a_cart_would(cfg, operator, customer, unique):
    bulb, lamp = f"T{unique.upper()}-DBULB", f"T{unique.upper()}-DLAMP"
    put_product(operator, bulb, "1.85")
    put_product(operator, lamp, "24.50")
    body = {**CHECKOUT, "lines": [{"sku": bulb, "quantity": 1000}, {"sku": lamp, "quantity": 2}]}
    key = str(uuid.uuid4())
    first = direct(customer, body, key)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["total"] == {"amount": "1899.00", "currency": "EUR"}
    assert first.headers["Location"] == f"/orders/{answer['order_id']}"
    retry = direct(customer, body, key)
    assert (retry.status_code, retry.json(), retry.headers.get("Idempotent-Replayed")) == (202, answer, "true")
    assert direct(customer, {**body, "language": "en"}, key).status_code == 409   # the key is this request's

    [event] = all_published(cfg, "OrderPlaced", answer["order_id"])
    order = event["data"]
    assert order["customer_id"] == f"cust-{unique}" and order["channel"] == "web"
    assert sorted((line["sku"], line["quantity"], line["unit_price"]["amount"]) for line in order["lines"]) == \
        sorted([(bulb, 1000, "1.85"), (lamp, 2, "24.50")])
    cart = customer.get(f"/carts/{answer['cart_id']}").json()   # the customer's history shows it as a cart
    assert cart["status"] == "checked_out" and cart["order_id"] == answer["order_id"]


def test_a_refused_direct_checkout_keeps_nothing(operator, customer, unique):
    sold, gone = f"T{unique.upper()}-DSOLD", f"T{unique.upper()}-DGONE"
    put_product(operator, sold, "3.00")
    put_product(operator, gone, "3.00", active=False)
    before = customer.get("/carts").json()["total"]
    unknown = direct(customer, {**CHECKOUT, "lines": [{"sku": sold, "quantity": 1}, {"sku": "NO-SUCH", "quantity": 1}]})
    assert unknown.status_code == 404 and "NO-SUCH" in unknown.text
    inactive = direct(customer, {**CHECKOUT, "lines": [{"sku": sold, "quantity": 1}, {"sku": gone, "quantity": 1}]})
    assert inactive.status_code == 409 and "no longer sold" in inactive.text
    twice = direct(customer, {**CHECKOUT, "lines": [{"sku": sold, "quantity": 1}, {"sku": sold, "quantity": 2}]})
    assert twice.status_code == 409 and "one line" in twice.text   # a rule: JSON Schema cannot say it
    assert customer.get("/carts").json()["total"] == before    # no half-filled cart left behind
