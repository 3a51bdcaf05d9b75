"""Cart endpoints: a customer's own carts, priced from the catalog on every read."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Request

from runtime.auth import Principal, require
from runtime.pages import Page, PageParams, page, page_params
from runtime.problems import Conflict, NotFound
from runtime.service import ServiceContext
from schemas.types import ID_BOUNDS
from services.cart import store
from services.cart.models import CartOut, LineIn, LineOut
from services.cart.pricing import PricedLine, cart_currency, check_can_add, total

CartId = Annotated[str, Path(**ID_BOUNDS, description="the cart id (cart-...)")]
LineSku = Annotated[str, Path(**ID_BOUNDS, description="catalog SKU, e.g. BULB-LED-9W")]
NOT_FOUND = {404: {"description": "no such cart for this customer"}}


class CheckedOut(Conflict):
    slug = "cart-checked-out"


def own_cart(conn: psycopg.Connection, cart_id: str, principal: Principal, *, lock: bool = False) -> dict:
    # Another customer's cart answers exactly like a missing one: ids are not confirmed to strangers.
    cart = store.get_cart(conn, cart_id, principal.subject, lock=lock)
    if cart is None:
        raise NotFound(f"no cart {cart_id!r} for this customer")
    return cart


def open_cart(conn: psycopg.Connection, cart_id: str, principal: Principal) -> dict:
    """The cart, locked for this transaction, provided it can still change."""
    cart = own_cart(conn, cart_id, principal, lock=True)
    if cart["status"] != "open":
        placed = cart["order_id"] or cart["standing_order_id"]
        raise CheckedOut(f"cart {cart_id} is already checked out ({placed}); start a new cart")
    return cart


def add_line(conn: psycopg.Connection, cart_id: str, sku: str, quantity: int, others: list[PricedLine],
             supported_currencies: frozenset[str], now) -> PricedLine:
    """Put `quantity` of `sku` in the open cart beside `others` (its other lines), if the catalog
    and the cart allow it (NotFound, CartProblem); the checkout that carries its lines does the same."""
    row = store.get_product(conn, sku)
    if row is None:
        raise NotFound(f"no product with SKU {sku!r} in the catalog")
    product = store.as_product(row)
    check_can_add(product, others, len(others), supported_currencies, quantity)
    store.set_line(conn, cart_id, sku, quantity, now)
    return PricedLine(product, quantity)


def cart_view(conn: psycopg.Connection, cart: dict) -> CartOut:
    lines = store.priced_lines(conn, cart["cart_id"])
    return CartOut(
        cart_id=cart["cart_id"], customer_id=cart["customer_id"], status=cart["status"],
        currency=cart_currency(lines), total=total(lines),
        lines=[LineOut(sku=line.product.sku, name=line.product.name, quantity=line.quantity,
                       unit_price=line.unit_price, line_total=line.line_total, active=line.product.active)
               for line in lines],
        order_id=cart["order_id"], standing_order_id=cart["standing_order_id"], created_at=cart["created_at"],
        updated_at=cart["updated_at"], checked_out_at=cart["checked_out_at"])


def router(ctx: ServiceContext) -> APIRouter:
    api = APIRouter(tags=["carts"])
    customer = require("customer")

    @api.post("/carts", response_model=CartOut, status_code=201)
    def create_cart(principal: Principal = Depends(customer)) -> CartOut:
        with ctx.unit_of_work() as uow:
            cart = store.create_cart(uow.conn, f"cart-{uuid.uuid4().hex}", principal.subject, uow.now())
            return cart_view(uow.conn, cart)

    @api.get("/carts", response_model=Page[CartOut])
    def list_carts(request: Request, status: Literal["open", "checked_out"] | None = None,
                   params: PageParams = Depends(page_params), principal: Principal = Depends(customer)):
        """The customer's carts, newest first."""
        with ctx.pool.connection() as conn:
            total_, rows = store.list_carts(conn, principal.subject, status, params.limit, params.offset)
            return page(request, [cart_view(conn, c) for c in rows], params, total_)

    @api.get("/carts/{cart_id}", response_model=CartOut, responses=NOT_FOUND)
    def get_cart(cart_id: CartId, principal: Principal = Depends(customer)) -> CartOut:
        with ctx.pool.connection() as conn:
            return cart_view(conn, own_cart(conn, cart_id, principal))

    @api.put("/carts/{cart_id}/lines/{sku}", response_model=CartOut,
             responses={404: {"description": "no such cart for this customer, or no such product"},
                        409: {"description": "cart already checked out (cart-checked-out); the product is no longer "
                                            "sold, in another currency than the cart, or the cart is full "
                                            "(cart-cannot-order)"}})
    def put_line(cart_id: CartId, sku: LineSku, body: LineIn, principal: Principal = Depends(customer)) -> CartOut:
        """Put `quantity` units of a product in the cart (replacing any quantity already there)."""
        with ctx.unit_of_work() as uow:
            cart = open_cart(uow.conn, cart_id, principal)
            others = [line for line in store.priced_lines(uow.conn, cart_id) if line.product.sku != sku]
            now = uow.now()
            add_line(uow.conn, cart_id, sku, body.quantity, others, ctx.settings.supported_currencies(), now)
            return cart_view(uow.conn, {**cart, "updated_at": now})

    @api.delete("/carts/{cart_id}/lines/{sku}", response_model=CartOut,
                responses={404: {"description": "no such cart for this customer, or the product is not in it"},
                           409: {"description": "cart already checked out (cart-checked-out)"}})
    def delete_line(cart_id: CartId, sku: LineSku, principal: Principal = Depends(customer)) -> CartOut:
        with ctx.unit_of_work() as uow:
            cart = open_cart(uow.conn, cart_id, principal)
            now = uow.now()
            if not store.delete_line(uow.conn, cart_id, sku, now):
                raise NotFound(f"product {sku!r} is not in cart {cart_id}")
            return cart_view(uow.conn, {**cart, "updated_at": now})

    return api
