"""Standing orders over HTTP, for the customer and for a salesperson or operator acting for them."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime
from typing import Callable

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas import Delivery, Payment, StandingLine, deterministic_id
from schemas.events.scheduling import Interval
from schemas.types import Language
from services.scheduler import store
from services.scheduler.handlers import apply_change, create_standing_order
from services.scheduler.standing import InvalidChange, StandingOrder

anyone = require("customer", "salesperson", "operator")


class StandingOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = Field(default=None, min_length=1, max_length=64,
                                    description="defaults to the calling customer; staff must name one")
    lines: list[StandingLine] = Field(min_length=1, max_length=200)
    delivery: Delivery
    payment: Payment = Payment(mode="account")
    language: Language = "en"
    interval: Interval
    start_date: date = Field(description="date of the first occurrence, in the customer's time zone")
    time_zone: str = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = Field(default=None, description="last possible date (inclusive); none = until further notice")
    max_occurrences: int | None = Field(default=None, ge=1, description="end after this many occurrences")


class StandingOrderPatch(BaseModel):
    """Applies to occurrences not yet placed."""
    model_config = ConfigDict(extra="forbid")
    lines: list[StandingLine] | None = Field(default=None, min_length=1, max_length=200)
    delivery: Delivery | None = None

    @model_validator(mode="after")
    def _something(self) -> "StandingOrderPatch":
        if self.lines is None and self.delivery is None:
            raise ValueError("give lines, delivery or both")
        return self


def _at(dt: datetime, order: StandingOrder) -> dict:
    return {"due_at": dt.isoformat(), "local_date": order.local_today(dt).isoformat()}


def view(order: StandingOrder, now: datetime, history: list[dict] | None = None) -> dict:
    body = {
        "standing_order_id": order.standing_order_id, "customer_id": order.customer_id, "status": order.status,
        "lines": [line.model_dump(mode="json") for line in order.lines],
        "delivery": order.delivery.model_dump(mode="json"),
        "payment": order.payment.model_dump(mode="json", exclude_none=True), "language": order.language,
        "interval": {"every": order.every, "unit": order.unit}, "start_date": order.start_date.isoformat(),
        "time_zone": order.time_zone, "local_time": order.local_time.strftime("%H:%M"),
        "end_date": order.end_date.isoformat() if order.end_date else None,
        "max_occurrences": order.max_occurrences, "skip_occurrences": list(order.skip_occurrences),
        "last_occurrence": order.last_occurrence, "next_occurrence": order.next_occurrence,
        "next_due_at": order.next_due_at.isoformat() if order.next_due_at else None,
        "upcoming": [{"occurrence": n, **_at(at, order)} for n, at in order.upcoming(now)],
    }
    if history is not None:
        body["placed"] = [{"occurrence": h["occurrence"], **_at(h["due_at"], order),
                           "emitted_at": h["emitted_at"].isoformat()} for h in history]
    return body


def _changed_by(who: Principal) -> str:
    return who.subject if who.role != "operator" else f"operator:{who.subject}"


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app("scheduler", description="Standing orders: list, pause, resume, skip, change, cancel.")

    def load(conn, standing_order_id: str, who: Principal, *, lock: bool = False) -> StandingOrder:
        order = store.get(conn, standing_order_id, lock=lock)
        # Another customer's order is reported as absent, not forbidden: ids are not to be probed.
        if order is None or not who.can_act_for_customer(order.customer_id):
            raise HTTPException(404, f"no standing order {standing_order_id}")
        return order

    def change(standing_order_id: str, who: Principal, what: Callable[[StandingOrder, datetime], tuple]) -> dict:
        with ctx.unit_of_work() as uow:
            order = load(uow.conn, standing_order_id, who, lock=True)
            try:
                changes = what(order, uow.now())
            except InvalidChange as exc:
                raise HTTPException(409, str(exc)) from exc
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            for new, kind in changes:  # each change its own version, so each is announced
                order = apply_change(uow, replace(new, version=order.version), kind, _changed_by(who))
            return view(order, uow.now(), store.emitted_occurrences(uow.conn, standing_order_id))

    @app.post("/standing-orders", status_code=201)
    def create(body: StandingOrderIn, response: Response, who: Principal = Depends(anyone),
               idempotency_key: str | None = Header(default=None, max_length=200)) -> dict:
        customer_id = body.customer_id or (who.subject if who.role == "customer" else None)
        if customer_id is None:
            raise HTTPException(422, "customer_id is required when acting for a customer")
        if not who.can_act_for_customer(customer_id):
            raise HTTPException(403, "customers can create standing orders only for themselves")
        # The same key from the same customer is the same standing order, however often it is retried.
        so_id = (deterministic_id("standing-order", customer_id, idempotency_key) if idempotency_key
                 else str(uuid.uuid4()))
        try:
            order = StandingOrder.new(
                standing_order_id=so_id, customer_id=customer_id, lines=body.lines, delivery=body.delivery,
                payment=body.payment, language=body.language, interval=body.interval, start_date=body.start_date,
                time_zone=body.time_zone, end_date=body.end_date, max_occurrences=body.max_occurrences)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        with ctx.unit_of_work() as uow:
            if body.start_date < order.local_today(uow.now()):
                raise HTTPException(422, f"start_date {body.start_date} is in the past for {body.time_zone}")
            if not create_standing_order(uow, order, _changed_by(who)):
                response.status_code = 200
                order = load(uow.conn, so_id, who)
            return view(order, uow.now(), store.emitted_occurrences(uow.conn, so_id))

    @app.get("/standing-orders/{standing_order_id}")
    def get_one(standing_order_id: str, who: Principal = Depends(anyone)) -> dict:
        with ctx.pool.connection() as conn:
            order = load(conn, standing_order_id, who)
            return view(order, ctx.clock.now(), store.emitted_occurrences(conn, standing_order_id))

    @app.get("/customers/{customer_id}/standing-orders")
    def for_customer(customer_id: str, who: Principal = Depends(anyone)) -> dict:
        if not who.can_act_for_customer(customer_id):
            raise HTTPException(403, "customers can see only their own standing orders")
        with ctx.pool.connection() as conn:
            orders = store.for_customer(conn, customer_id)
        now = ctx.clock.now()
        return {"customer_id": customer_id, "standing_orders": [view(o, now) for o in orders]}

    @app.post("/standing-orders/{standing_order_id}/pause")
    def pause(standing_order_id: str, who: Principal = Depends(anyone)) -> dict:
        return change(standing_order_id, who, lambda o, now: [] if o.status == "paused" else [(o.pause(), "paused")])

    @app.post("/standing-orders/{standing_order_id}/resume")
    def resume(standing_order_id: str, who: Principal = Depends(anyone)) -> dict:
        return change(standing_order_id, who,
                      lambda o, now: [] if o.status == "active" else [(o.resume(now), "resumed")])

    @app.post("/standing-orders/{standing_order_id}/skip-next")
    def skip_next(standing_order_id: str, who: Principal = Depends(anyone)) -> dict:
        return change(standing_order_id, who, lambda o, now: [(o.skip_next(now)[0], "skipped")])

    @app.patch("/standing-orders/{standing_order_id}")
    def patch(standing_order_id: str, body: StandingOrderPatch, who: Principal = Depends(anyone)) -> dict:
        def what(o: StandingOrder, _now) -> list:
            out = []
            if body.lines is not None and tuple(body.lines) != o.lines:
                o = o.with_lines(body.lines)
                out.append((o, "lines_changed"))
            if body.delivery is not None and body.delivery != o.delivery:
                o = o.with_delivery(body.delivery)
                out.append((o, "delivery_changed"))
            return out
        return change(standing_order_id, who, what)

    @app.post("/standing-orders/{standing_order_id}/cancel")
    def cancel(standing_order_id: str, who: Principal = Depends(anyone)) -> dict:
        return change(standing_order_id, who,
                      lambda o, now: [] if o.status == "cancelled" else [(o.cancel(), "cancelled")])

    return app
