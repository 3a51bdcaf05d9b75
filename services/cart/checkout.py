"""Checkout: turns an open cart into an OrderPlaced (or a StandingOrderRequested), exactly once per
Idempotency-Key, priced from the catalog at that moment."""
from __future__ import annotations

import re
import uuid
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse

from runtime.auth import Principal, require
from runtime.service import ServiceContext
from runtime.uow import UnitOfWork
from schemas import OrderPlaced, StandingOrderRequested, StandingLine, deterministic_id
from schemas.events.scheduling import Interval
from schemas.types import Money
from services.cart import store
from services.cart.carts import open_cart
from services.cart.models import CheckoutIn, CheckoutOut
from services.cart.pricing import CartProblem, PricedLine, check_orderable, fingerprint

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def router(ctx: ServiceContext) -> APIRouter:
    api = APIRouter(tags=["checkout"])

    @api.post("/carts/{cart_id}/checkout", status_code=202, response_model=CheckoutOut,
              responses={400: {"description": "Idempotency-Key missing or malformed"},
                         404: {"description": "no such cart for this customer"},
                         409: {"description": "cart already checked out, or the key was used for another request"},
                         422: {"description": "cart cannot be ordered as it stands, or invalid body"}})
    def checkout(cart_id: str, body: CheckoutIn,
                 idempotency_key: str | None = Header(None, alias="Idempotency-Key",
                                                      description="unique per checkout attempt; "
                                                                  "reuse it when retrying"),
                 principal: Principal = Depends(require("customer"))) -> JSONResponse:
        """Place the order (or request the standing order). A retry with the same Idempotency-Key and
        body answers exactly as the first call did; nothing is ordered twice."""
        if not idempotency_key or not IDEMPOTENCY_KEY.match(idempotency_key):
            raise HTTPException(400, "an Idempotency-Key header (1-200 printable characters, e.g. a UUID) is "
                                     "required so a retried checkout never orders twice")
        request_fingerprint = fingerprint(cart_id, body.model_dump(mode="json"))
        with ctx.unit_of_work() as uow:
            store.lock_idempotency_key(uow.conn, principal.subject, idempotency_key)
            first = store.find_checkout(uow.conn, principal.subject, idempotency_key)
            if first is not None:
                if first["fingerprint"] != request_fingerprint:
                    raise HTTPException(409, "this Idempotency-Key was already used for a different checkout "
                                             "request; use a new key for a new checkout")
                return JSONResponse(first["response"], status_code=first["status_code"],
                                    headers={"Idempotent-Replayed": "true"})
            open_cart(uow.conn, cart_id, principal)
            lines = store.priced_lines(uow.conn, cart_id)
            try:
                amount = check_orderable(lines, ctx.settings.supported_currencies())
            except CartProblem as exc:
                raise HTTPException(422, str(exc)) from None
            if body.recurrence is None:
                result = _place_order(uow, principal.subject, cart_id, body, lines, amount)
            else:
                result = _request_standing_order(uow, principal.subject, cart_id, body, lines, amount)
            content = result.model_dump(mode="json", exclude_none=True)
            store.record_checkout(uow.conn, principal.subject, idempotency_key, request_fingerprint, cart_id,
                                  202, content, uow.now())
        return JSONResponse(content, status_code=202)

    return api


def _place_order(uow: UnitOfWork, customer_id: str, cart_id: str, body: CheckoutIn, lines: list[PricedLine],
                 amount: Money) -> CheckoutOut:
    order_id = f"ord-{uuid.uuid4().hex}"
    now = uow.now()
    uow.emit(OrderPlaced(order_id=order_id, customer_id=customer_id, lines=[line.order_line() for line in lines],
                         total=amount, delivery=body.delivery, payment=body.payment, language=body.language,
                         channel="web", placed_at=now, priced_note="catalog price at checkout"),
             event_id=deterministic_id("OrderPlaced", order_id))
    store.mark_checked_out(uow.conn, cart_id, now, order_id=order_id, standing_order_id=None)
    return CheckoutOut(cart_id=cart_id, order_id=order_id, total=amount)


def _request_standing_order(uow: UnitOfWork, customer_id: str, cart_id: str, body: CheckoutIn,
                            lines: list[PricedLine], amount: Money) -> CheckoutOut:
    rec = body.recurrence
    assert rec is not None
    now = uow.now()
    today = now.astimezone(ZoneInfo(rec.time_zone)).date()
    if rec.start_date < today:
        raise HTTPException(422, f"recurrence.start_date {rec.start_date} is in the past (today is {today} "
                                 f"in {rec.time_zone})")
    standing_order_id = f"so-{uuid.uuid4().hex}"
    uow.emit(StandingOrderRequested(
        standing_order_id=standing_order_id, customer_id=customer_id,
        lines=[StandingLine(sku=line.product.sku, quantity=line.quantity) for line in lines],
        delivery=body.delivery, payment=body.payment, language=body.language,
        interval=Interval(every=rec.every, unit=rec.unit), start_date=rec.start_date, time_zone=rec.time_zone,
        end_date=rec.end_date, max_occurrences=rec.max_occurrences, requested_at=now),
        event_id=deterministic_id("StandingOrderRequested", standing_order_id))
    store.mark_checked_out(uow.conn, cart_id, now, order_id=None, standing_order_id=standing_order_id)
    return CheckoutOut(cart_id=cart_id, standing_order_id=standing_order_id, total=amount,
                       first_order_on=rec.start_date)
