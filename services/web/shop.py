"""Storefront and customer portal: catalog, cart, checkout, orders, standing orders, account.
Every call carries the customer's own key: the cart, orders, scheduler and payments APIs show a
customer only their own carts, orders, standing orders and account."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse

from schemas.types import ID_BOUNDS, LINE_PATTERN
from services.web.app import PageError, Web, check_csrf
from services.web.upstream import UpstreamError

Sku = Path(**ID_BOUNDS)
OrderId = Path(**ID_BOUNDS)
#: the simulated gateway's test cards (services/payments/simulated_gateway.py): a real gateway's
#: hosted card field returns such a token; no card number is ever typed into or sent to our pages
TEST_CARDS = (("tok_visa_approved", "card_approved"), ("tok_insufficient_funds", "card_insufficient"),
              ("tok_fraud_suspected", "card_fraud"))
SO_ACTIONS = ("pause", "resume", "skip-next", "cancel")


def category(sku: str) -> str:
    """Products have no category field: the SKU's family (BULB-LED-9W -> BULB) is the category."""
    return sku.split("-", 1)[0]


def router(web: Web) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    api = web.api

    def me(request: Request):
        return web.person(request, "customer")

    def open_cart(s, create: bool) -> dict | None:
        carts = api.get(s.key, "cart", "/carts", status="open", limit=1)["items"]
        if carts:
            return carts[0]
        return api.post(s.key, "cart", "/carts") if create else None

    @r.get("/shop")
    def catalog(request: Request, q: str | None = Query(None, max_length=100, pattern=LINE_PATTERN),
                category_: str | None = Query(None, alias="category", max_length=40),
                offset: int = Query(0, ge=0, le=100_000)):
        s = me(request)
        page = web.call(api.get, s.key, "cart", "/products", q=q or None, limit=200, offset=offset)
        items = page["items"]
        categories = sorted({category(p["sku"]) for p in items})
        if category_:
            items = [p for p in items if category(p["sku"]) == category_]
        return web.render(request, "shop.html", products=items, categories=categories, q=q or "",
                          category=category_ or "",
                          next_offset=page["offset"] + len(page["items"]) if page["next"] else None)

    @r.get("/shop/products/{sku}")
    def product(request: Request, sku: str = Sku):
        s = me(request)
        return web.render(request, "product.html", product=web.call(api.get, s.key, "cart", f"/products/{sku}"))

    @r.post("/cart/lines", dependencies=[Depends(check_csrf)])
    def add_line(request: Request, sku: str = Form(..., max_length=40), quantity: int = Form(..., ge=1, le=1_000_000)):
        s = me(request)
        cart = open_cart(s, create=True)
        existing = {line["sku"]: line["quantity"] for line in cart["lines"]}
        try:
            api.put(s.key, "cart", f"/carts/{cart['cart_id']}/lines/{sku}",
                    {"quantity": min(existing.get(sku, 0) + quantity, 1_000_000)})
        except UpstreamError as exc:
            raise PageError(exc.status if exc.status < 500 else 502, exc.detail) from exc
        return RedirectResponse("/cart", status_code=303)

    @r.post("/cart/lines/{sku}", dependencies=[Depends(check_csrf)])
    def change_line(request: Request, sku: str = Sku, quantity: int = Form(..., ge=0, le=1_000_000)):
        s = me(request)
        cart = open_cart(s, create=False)
        if cart is None:
            raise PageError(404, web.formats(request).t("cart_empty"))
        path = f"/carts/{cart['cart_id']}/lines/{sku}"
        web.call(api.delete, s.key, "cart", path) if quantity == 0 else \
            web.call(api.put, s.key, "cart", path, {"quantity": quantity})
        return RedirectResponse("/cart", status_code=303)

    @r.get("/cart")
    def cart_page(request: Request):
        s = me(request)
        return web.render(request, "cart.html", cart=open_cart(s, create=False))

    def checkout_form(request: Request, s, status: int = 200, error: str | None = None, values: dict | None = None):
        cart = open_cart(s, create=False)
        try:
            account = api.get(s.key, "payments", f"/accounts/{s.subject}", entries=0)
        except UpstreamError:
            account = None  # no supplier account: card only
        today = web.ctx.clock.now().astimezone(web.formats(request).tz).date()
        defaults = {"recipient": s.row["name"], "email": s.row["email"], "country": "", "every": "4",
                    "unit": "weeks", "start_date": (today + timedelta(days=1)).isoformat(),
                    "payment_mode": "account" if account else "card", "card_token": TEST_CARDS[0][0]}
        return web.render(request, "checkout.html", status=status, cart=cart, account=account, error=error,
                          values={**defaults, **(values or {})}, cards=TEST_CARDS,
                          idempotency_key=(values or {}).get("idempotency_key") or str(uuid.uuid4()))

    @r.get("/checkout")
    def checkout_page(request: Request):
        return checkout_form(request, me(request))

    @r.post("/checkout", dependencies=[Depends(check_csrf)])
    def checkout(request: Request, idempotency_key: str = Form(..., max_length=64),
                 recipient: str = Form(..., max_length=200), address1: str = Form(..., max_length=200),
                 address2: str = Form("", max_length=200), city: str = Form(..., max_length=100),
                 postal_code: str = Form(..., max_length=20), country: str = Form(..., max_length=2),
                 phone: str = Form(..., max_length=40), email: str = Form(..., max_length=254),
                 payment_mode: Literal["account", "card"] = Form(...), card_token: str = Form("", max_length=70),
                 repeat: bool = Form(False), every: int = Form(4, ge=1, le=366),
                 unit: Literal["weeks", "months"] = Form("weeks"), start_date: str = Form("", max_length=10)):
        s = me(request)
        f = web.formats(request)
        values = {k: v for k, v in locals().items() if k in (
            "idempotency_key", "recipient", "address1", "address2", "city", "postal_code", "country", "phone",
            "email", "payment_mode", "card_token", "repeat", "every", "unit", "start_date")}
        cart = open_cart(s, create=False)
        if cart is None or not cart["lines"]:
            raise PageError(409, f.t("cart_empty"))
        body = {"delivery": {"recipient": recipient.strip(), "address_lines": [a.strip() for a in (address1, address2)
                                                                               if a.strip()],
                             "city": city.strip(), "postal_code": postal_code.strip(),
                             "country": country.strip().upper(), "phone": phone.strip(), "email": email.strip()},
                "payment": {"mode": "account"} if payment_mode == "account" else {"mode": "card",
                                                                                   "card_token": card_token},
                "language": f.lang}
        if repeat:
            body["standing_order"] = {"interval": {"every": every, "unit": unit}, "start_date": start_date,
                                      "time_zone": f.tz_name}
        try:
            placed = api.post(s.key, "cart", f"/carts/{cart['cart_id']}/checkout", body,
                              headers={"Idempotency-Key": idempotency_key})
        except UpstreamError as exc:
            if exc.status >= 500:
                raise PageError(502, exc.detail) from exc
            return checkout_form(request, s, status=422, error=exc.detail, values=values)
        if placed.get("order_id"):
            return RedirectResponse(f"/orders/{placed['order_id']}?placed=1", status_code=303)
        return RedirectResponse("/standing-orders?created=1", status_code=303)

    @r.get("/orders")
    def orders(request: Request):
        s = me(request)
        return web.render(request, "orders.html",
                          orders=web.call(api.get, s.key, "orders", f"/customers/{s.subject}/orders", limit=100)["items"])

    @r.get("/orders/{order_id}")
    def order(request: Request, order_id: str = OrderId, placed: bool = False):
        s = web.person(request, "customer", "operator", "warehouse", "salesperson")
        try:
            found = api.get(s.key, "orders", f"/orders/{order_id}")
        except UpstreamError as exc:
            if exc.status == 404 and placed:
                found = None  # the checkout was accepted; the orders service has not taken it in yet
            else:
                raise PageError(exc.status if exc.status < 500 else 502, exc.detail) from exc
        return web.render(request, "order.html", order=found, order_id=order_id, placed=placed)

    @r.get("/standing-orders")
    def standing_orders(request: Request, created: bool = False, changed: bool = False):
        s = me(request)
        found = web.call(api.get, s.key, "scheduler", f"/customers/{s.subject}/standing-orders")
        return web.render(request, "standing_orders.html", standing=found["items"], created=created,
                          changed=changed)

    @r.post("/standing-orders/{standing_order_id}/lines", dependencies=[Depends(check_csrf)])
    def change_standing_lines(request: Request, standing_order_id: str = Path(**ID_BOUNDS),
                              sku: list[str] = Form(..., max_length=200), quantity: list[int] = Form(..., max_length=200)):
        """Changes the quantities of the deliveries not yet placed (0 drops a line)."""
        s = me(request)
        if len(sku) != len(quantity) or any(not 0 <= q <= 1_000_000 for q in quantity):
            raise PageError(422, web.formats(request).t("err_fields", fields="quantity"))
        lines = [{"sku": k, "quantity": q} for k, q in zip(sku, quantity) if q > 0]
        if not lines:
            raise PageError(422, web.formats(request).t("so_keep_one"))
        web.call(api.call, s.key, "PATCH", "scheduler", f"/standing-orders/{standing_order_id}",
                 json_body={"lines": lines})
        return RedirectResponse("/standing-orders?changed=1", status_code=303)

    @r.post("/standing-orders/{standing_order_id}/{action}", dependencies=[Depends(check_csrf)])
    def standing_order_action(request: Request, standing_order_id: str = Path(**ID_BOUNDS),
                              action: str = Path(max_length=20)):
        s = me(request)
        if action not in SO_ACTIONS:
            raise PageError(404, action)
        web.call(api.post, s.key, "scheduler", f"/standing-orders/{standing_order_id}/{action}")
        return RedirectResponse("/standing-orders", status_code=303)

    @r.get("/account")
    def account(request: Request):
        s = me(request)
        try:
            found = api.get(s.key, "payments", f"/accounts/{s.subject}", entries=50)
        except UpstreamError as exc:
            if exc.status != 404:
                raise PageError(exc.status if exc.status < 500 else 502, exc.detail) from exc
            found = None
        return web.render(request, "account.html", account=found)

    return r
