"""The whole journey in Chromium: a buyer signs in by the emailed link, fills a cart, checks out on
account and by card, sees the confirmation number and later the order shipped; sets up a standing
order and skips one; a warehouse clerk ships the order; the salesperson sees the follow-up task
with its reminder ahead of time and logs a call; an operator re-drives a dead letter. Every page is
screenshotted (out/browser/<test>/) and checked with axe-core."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.conftest import wait_until
from tests.web_stack import seed_customer, start_web

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def web(harness, cfg, stack):
    from demo.seed import seed_catalog
    w = start_web(harness, cfg, stack)
    with harness.client("cart", "operator", "browser-operator") as ops:
        seed_catalog(ops)
    u = uuid.uuid4().hex[:8]
    w.customer = f"hotel-{u}"
    seed_customer(harness, w.customer, f"sp-{u}", f"sp-{u}@example.com")
    w.add_person("buyer", email=f"buyer-{u}@example.com", name="Ana Buyer", role="customer", subject=w.customer)
    w.add_person("sp", email=f"sp-{u}@example.com", name="Sam Seller", role="salesperson", subject=f"sp-{u}")
    w.add_person("wh", email=f"wh-{u}@example.com", name="Wanda Warehouse", role="warehouse", subject="dc-1")
    w.add_person("op", email=f"op-{u}@example.com", name="Olga Operator", role="operator", subject="olga")
    return w


def sign_in(chromium, web, pages, who: str):
    context = chromium.new_context(bypass_csp=True, locale="en-GB")
    page = context.new_page()
    email = web.people[who]["email"]
    before = len(web.links_for(email))
    page.goto(f"{web.url}/signin")
    pages.check(page, f"{who}-signin")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.wait_for_url("**/signin?sent=1")
    link = web.wait_link(email, before)
    page.goto(web.url + "/signin/" + link.rsplit("/", 1)[1])
    pages.check(page, f"{who}-link")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state("load")
    return page


def fill_delivery(page, email: str) -> None:
    page.get_by_label("Street address").fill("ul. Długa 1")
    page.get_by_label("City").fill("Kraków")
    page.get_by_label("Postal code").fill("30-001")
    page.get_by_label("Country").fill("PL")
    page.get_by_label("Phone").fill("+48 12 000 00 00")


def confirmation_number(page, pages, name: str) -> str:
    pages.check(page, f"{name}-first-look")  # most often still waiting for the payment
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = page.locator("#confirmation-number")
        if found.count():
            pages.check(page, name)
            return found.inner_text()
        page.wait_for_timeout(500)
        page.reload()  # what the page's "See the latest" link does
    raise AssertionError("no confirmation number on the order page")


def test_buyer_orders_on_account_and_by_card_and_sees_the_order_shipped(chromium, web, pages, harness):
    page = sign_in(chromium, web, pages, "buyer")
    assert page.url.endswith("/shop")
    pages.check(page, "storefront")
    page.get_by_label("Search").fill("LED")
    page.get_by_role("button", name="Search").click()
    pages.check(page, "search")
    page.get_by_role("link", name=re.compile("LED bulb 9 W")).click()
    pages.check(page, "product")
    page.get_by_label("Quantity").fill("10")
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/cart")
    assert "€18.50" in page.content()
    pages.check(page, "cart")
    page.get_by_role("link", name="Go to checkout").click()
    assert "Available credit" in page.content()
    fill_delivery(page, web.people["buyer"]["email"])
    page.get_by_label("On my supplier account").check()
    pages.check(page, "checkout-account")
    page.get_by_role("button", name="Place order").click()
    on_account = confirmation_number(page, pages, "confirmation-account")
    order_url = page.url.split("?")[0]

    # by card: the page offers the gateway's tokens; no card number field exists
    page.goto(f"{web.url}/shop")
    page.get_by_label("Quantity").first.fill("3")
    page.get_by_role("button", name="Add to cart").first.click()
    page.get_by_role("link", name="Go to checkout").click()
    assert page.locator("input[name*=card_number]").count() == 0
    fill_delivery(page, web.people["buyer"]["email"])
    page.get_by_label("By card").check()
    page.get_by_label("Card at the payment gateway").select_option("tok_visa_approved")
    pages.check(page, "checkout-card")
    page.get_by_role("button", name="Place order").click()
    by_card = confirmation_number(page, pages, "confirmation-card")
    assert by_card != on_account

    # the warehouse clerk ships the account order
    clerk = sign_in(chromium, web, pages, "wh")
    clerk.goto(f"{web.url}/ops?customer_id={web.customer}")
    pages.check(clerk, "ops-orders")
    order_id = order_url.rsplit("/", 1)[1]
    row = clerk.locator("tr", has=clerk.locator(f"a[href='/orders/{order_id}']"))
    row.get_by_label("Tracking number").fill("JD014600006281")
    row.get_by_role("button", name="Mark shipped").click()
    assert "recorded as shipped" in clerk.content()
    pages.check(clerk, "ops-shipped")

    page.goto(order_url)
    assert "JD014600006281" in page.inner_text("#tracking")
    assert page.inner_text("#order-status") == "Shipped"
    pages.check(page, "order-timeline-shipped")
    page.get_by_role("link", name="Orders", exact=True).click()
    pages.check(page, "order-history")
    page.get_by_role("link", name="Supplier account").click()
    pages.check(page, "supplier-account")

    # the salesperson sees the follow-up the CRM opened on shipping, with its reminder time, ahead of time
    seller = sign_in(chromium, web, pages, "sp")
    wait_until(lambda: seller.reload() and f"Hotel {web.customer}" in seller.inner_text("main"), timeout=60,
               message="the follow-up task on the salesperson's console")
    assert "Reminder" in seller.content()
    pages.check(seller, "sales-console")
    seller.get_by_role("link", name=f"Hotel {web.customer}").first.click()
    pages.check(seller, "customer-profile")
    seller.get_by_label("How").select_option("phone_call")
    seller.get_by_label("What was said").fill("Called about the delivery; all arrived.")
    seller.get_by_role("button", name="Log it").click()
    assert "The contact was logged." in seller.content()
    assert "Called about the delivery" in seller.content()
    pages.check(seller, "contact-logged")


def test_buyer_sets_up_a_standing_order_and_skips_one(chromium, web, pages):
    page = sign_in(chromium, web, pages, "buyer")
    page.get_by_label("Quantity").first.fill("4")
    page.get_by_role("button", name="Add to cart").first.click()
    page.get_by_role("link", name="Go to checkout").click()
    fill_delivery(page, web.people["buyer"]["email"])
    page.get_by_label("On my supplier account").check()
    page.get_by_label("Repeat this order until further notice").check()
    page.get_by_label("Every").fill("2")
    page.get_by_label("Unit").select_option("weeks")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url("**/standing-orders?created=1")
    wait_until(lambda: page.reload() or page.get_by_role("button", name="Skip the next delivery").count(),
               timeout=30, message="the standing order listed")
    pages.check(page, "standing-orders")
    first = page.locator("section li").first.inner_text()
    page.get_by_role("button", name="Skip the next delivery").click()
    page.wait_for_load_state("load")
    assert page.locator("section li").first.inner_text() != first
    pages.check(page, "standing-order-skipped")


def test_operator_sees_health_and_re_drives_a_dead_letter(chromium, web, pages, bus):
    bus.publish_raw("OrderPlaced", b"{not json", key=f"browser-{uuid.uuid4().hex[:6]}")
    page = sign_in(chromium, web, pages, "op")
    page.get_by_role("link", name="Service health").click()
    assert page.locator("td", has_text="OK").count() >= 5
    pages.check(page, "health")
    page.get_by_role("link", name="Dead letters").click()
    wait_until(lambda: page.reload() or page.get_by_role("button", name=re.compile("^Re-drive")).count(),
               timeout=60, message="a dead letter listed")
    pages.check(page, "dead-letters")
    page.get_by_role("button", name=re.compile("^Re-drive")).last.click()
    page.wait_for_load_state("load")
    assert "Re-driven:" in page.content()
    pages.check(page, "re-driven")
    page.get_by_role("link", name="Set aside", exact=True).click()
    assert page.get_by_role("heading", name="notifications").count() == 1
    pages.check(page, "set-aside")
    page.get_by_role("link", name="People").click()
    pages.check(page, "people")
    page.get_by_role("link", name="Catalog").click()
    pages.check(page, "catalog")
    page.goto(f"{web.url}/ops/accounts?customer_id={web.customer}")
    assert "Available credit" in page.content()
    pages.check(page, "supplier-accounts")
    # the same pages in another language: the choice in the header, kept for the session
    page.get_by_label("Language").select_option("vi")
    page.get_by_role("button", name="Change").click()
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "vi" and "Hạn mức tín dụng" in page.content()
    pages.check(page, "supplier-accounts-vi")
