"""Checkout: turns an open cart into an OrderPlaced (or a StandingOrderRequested), exactly once per
Idempotency-Key, priced from the catalog at that moment."""
from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from runtime.auth import Principal, require
from runtime.http import IdempotencyKey
from runtime.problems import Conflict, Refused
from runtime.service import ServiceContext
from runtime.uow import UnitOfWork
from schemas import OrderPlaced, StandingOrderRequested, StandingLine, deterministic_id
from schemas.types import Money
from services.cart import store
from services.cart.carts import CartId, add_line, open_cart
from services.cart.models import CheckoutIn, CheckoutOut, DirectCheckoutIn
from services.cart.pricing import PricedLine, check_orderable, fingerprint


class KeyReused(Conflict):
    slug = "idempotency-key-reused"


class StartsInThePast(Conflict):
    """A start date the calendar has passed (409: well formed, the clock decides)."""
    slug = "start-date-past"


#: the headers of a checkout's 202, for the OpenAPI document
ACCEPTED_HEADERS = {
    "Location": {"description": "where the result will be: /orders/{order_id} on the orders service, or "
                                "/standing-orders/{id} on the scheduler", "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "true when this answers a retry of the same Idempotency-Key",
                            "schema": {"type": "string", "enum": ["true"]}}}


def router(ctx: ServiceContext) -> APIRouter:
    api = APIRouter(tags=["checkout"])

    @api.post("/carts/{cart_id}/checkout", status_code=202, response_model=CheckoutOut,
              responses={202: {"description": "accepted: the order (or standing order) is on its way",
                               "headers": ACCEPTED_HEADERS},
                         404: {"description": "no such cart for this customer"},
                         409: {"description": "cart already checked out (cart-checked-out), the key was used for "
                                             "another request (idempotency-key-reused), the cart cannot be "
                                             "ordered as it stands (cart-cannot-order), or the standing order's "
                                             "start date has passed (start-date-past) or its end date is before "
                                             "its start (refused)"}})
    def checkout(cart_id: CartId, body: CheckoutIn, idempotency_key: IdempotencyKey,
                 principal: Principal = Depends(require("customer"))) -> JSONResponse:
        """Place the order (or request the standing order). A retry with the same Idempotency-Key and
        body answers exactly as the first call did (`Idempotent-Replayed: true`); nothing is ordered
        twice. Accepted (202): payments, orders and the emails follow on the bus; the order is then
        at the orders service's GET /orders/{order_id}."""
        request_fingerprint = fingerprint(cart_id, body.model_dump(mode="json"))
        with ctx.unit_of_work() as uow:
            replayed = _replay(uow, principal.subject, idempotency_key, request_fingerprint)
            if replayed is not None:
                return replayed
            open_cart(uow.conn, cart_id, principal)
            return _check_out(ctx, uow, principal.subject, cart_id, body, idempotency_key, request_fingerprint)

    @api.post("/checkout", status_code=202, response_model=CheckoutOut,
              responses={202: {"description": "accepted, as for a cart's checkout (the cart made for it is "
                                              "in the answer, already checked out)",
                               "headers": ACCEPTED_HEADERS},
                         404: {"description": "a line's SKU is not in the catalog"},
                         409: {"description": "as for a cart's checkout, for a line that could not be put "
                                             "in a cart (cart-cannot-order), and for a SKU on two lines "
                                             "(refused)"}})
    def direct_checkout(body: DirectCheckoutIn, idempotency_key: IdempotencyKey,
                        principal: Principal = Depends(require("customer"))) -> JSONResponse:
        """Place an order (or request a standing order) with its lines in this one call: the same
        checks, prices and exactly-once answer per Idempotency-Key as putting each line in a new
        cart and checking it out. Nothing is kept when it is refused (no half-filled cart)."""
        request_fingerprint = fingerprint("(direct)", body.model_dump(mode="json"))
        with ctx.unit_of_work() as uow:
            replayed = _replay(uow, principal.subject, idempotency_key, request_fingerprint)
            if replayed is not None:
                return replayed
            skus = [line.sku for line in body.lines]
            if len(set(skus)) != len(skus):
                # lines together: no schema says it, so a rule (409 refused, as for the dates)
                raise Refused("each SKU may appear on one line only; put the whole quantity on it")
            now = uow.now()
            cart_id = store.create_cart(uow.conn, f"cart-{uuid.uuid4().hex}", principal.subject, now)["cart_id"]
            added: list[PricedLine] = []
            for line in body.lines:
                added.append(add_line(uow.conn, cart_id, line.sku, line.quantity, added,
                                      ctx.settings.supported_currencies(), now))
            return _check_out(ctx, uow, principal.subject, cart_id, body, idempotency_key, request_fingerprint)

    return api


def _replay(uow: UnitOfWork, customer_id: str, key: str, request_fingerprint: str) -> JSONResponse | None:
    """The first answer to this key again (the key locked until the transaction ends, so two
    concurrent retries wait for each other), KeyReused for another request, None when it is new."""
    store.lock_idempotency_key(uow.conn, customer_id, key)
    first = store.find_checkout(uow.conn, customer_id, key)
    if first is None:
        return None
    if first["fingerprint"] != request_fingerprint:
        raise KeyReused("this Idempotency-Key was already used for a different checkout "
                        "request; use a new key for a new checkout")
    return JSONResponse(first["response"], status_code=first["status_code"],
                        headers={"Idempotent-Replayed": "true", "Location": location(first["response"])})


def _check_out(ctx: ServiceContext, uow: UnitOfWork, customer_id: str, cart_id: str, body: CheckoutIn, key: str,
               request_fingerprint: str) -> JSONResponse:
    """The open, locked cart ordered as it stands at catalog prices, and the answer kept for the key."""
    lines = store.priced_lines(uow.conn, cart_id)
    amount = check_orderable(lines, ctx.settings.supported_currencies())
    if body.standing_order is None:
        result = _place_order(uow, customer_id, cart_id, body, lines, amount)
    else:
        result = _request_standing_order(uow, customer_id, cart_id, body, lines, amount)
    content = result.model_dump(mode="json", exclude_none=True)
    store.record_checkout(uow.conn, customer_id, key, request_fingerprint, cart_id, 202, content, uow.now())
    return JSONResponse(content, status_code=202, headers={"Location": location(content)})


def location(answer: dict) -> str:
    """Where the checkout's result will be (docs/api.md): the order on the orders service, or the
    standing order on the scheduler."""
    if answer.get("order_id"):
        return f"/orders/{answer['order_id']}"
    return f"/standing-orders/{answer['standing_order_id']}"


def _place_order(uow: UnitOfWork, customer_id: str, cart_id: str, body: CheckoutIn, lines: list[PricedLine],
                 amount: Money) -> CheckoutOut:
    order_id = f"ord-{uuid.uuid4().hex}"
    now = uow.now()
    uow.emit(OrderPlaced(order_id=order_id, customer_id=customer_id, lines=[line.order_line() for line in lines],
                         total=amount, delivery=body.delivery, payment=body.event_payment(), language=body.language,
                         channel="web", placed_at=now, priced_note="catalog price at checkout"),
             event_id=deterministic_id("OrderPlaced", order_id))
    store.mark_checked_out(uow.conn, cart_id, now, order_id=order_id, standing_order_id=None)
    return CheckoutOut(cart_id=cart_id, order_id=order_id, total=amount)


def _request_standing_order(uow: UnitOfWork, customer_id: str, cart_id: str, body: CheckoutIn,
                            lines: list[PricedLine], amount: Money) -> CheckoutOut:
    rec = body.standing_order
    assert rec is not None
    now = uow.now()
    today = now.astimezone(ZoneInfo(rec.time_zone)).date()
    if rec.start_date < today:
        raise StartsInThePast(f"standing_order.start_date {rec.start_date} is in the past (today is {today} "
                              f"in {rec.time_zone})")
    if rec.end_date is not None and rec.end_date < rec.start_date:
        # the two dates together: no schema says it, so a rule (409 refused, as the scheduler answers)
        raise Refused("standing_order.end_date must not be before start_date")
    standing_order_id = f"so-{uuid.uuid4().hex}"
    uow.emit(StandingOrderRequested(
        standing_order_id=standing_order_id, customer_id=customer_id,
        lines=[StandingLine(sku=line.product.sku, quantity=line.quantity) for line in lines],
        delivery=body.delivery, payment=body.event_payment(), language=body.language,
        interval=rec.interval, start_date=rec.start_date, time_zone=rec.time_zone,
        end_date=rec.end_date, max_occurrences=rec.max_occurrences, requested_at=now),
        event_id=deterministic_id("StandingOrderRequested", standing_order_id))
    store.mark_checked_out(uow.conn, cart_id, now, order_id=None, standing_order_id=standing_order_id)
    return CheckoutOut(cart_id=cart_id, standing_order_id=standing_order_id, total=amount,
                       first_order_on=rec.start_date)
