"""Order status for customers and staff, and the distribution centres' shipping endpoint.

Customers see only their own orders: someone else's order answers 404, exactly like one that
does not exist, so order ids cannot be probed. Staff roles (operator, warehouse, salesperson)
see every order.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.service import ServiceContext
from schemas import Delivery, Money
from services.orders import distribution_centre, handlers, store

ANYONE = ("customer", "operator", "warehouse", "salesperson")


class LineView(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money


class ShipmentView(BaseModel):
    carrier: str
    tracking_number: str
    distribution_centre: str
    shipped_at: datetime


class TimelineEntry(BaseModel):
    event_type: str
    outcome: str = Field(description="applied, ignored (late or repeated), parked (waiting for the order) or refused")
    at: datetime
    details: dict[str, Any]


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: str
    confirmation_number: str | None
    channel: str
    placed_at: datetime
    confirmed_at: datetime | None
    lines: list[LineView]
    total: Money
    delivery: Delivery
    payment_mode: str
    language: str
    standing_order_id: str | None
    occurrence: int | None
    priced_note: str | None
    shipment: ShipmentView | None
    timeline: list[TimelineEntry]


class OrderSummary(BaseModel):
    order_id: str
    status: str
    confirmation_number: str | None
    total: Money
    channel: str
    placed_at: datetime
    confirmed_at: datetime | None
    shipped_at: datetime | None
    standing_order_id: str | None
    occurrence: int | None


class ShipmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: str = Field(min_length=1, max_length=100)
    tracking_number: str = Field(min_length=1, max_length=100)
    distribution_centre: str = Field(min_length=1, max_length=100)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="cancelled at the customer's request", min_length=1, max_length=500)


def _not_found(order_id: str) -> HTTPException:
    return HTTPException(404, f"no order {order_id}")


def order_view(conn, order: dict) -> OrderView:
    lines = handlers.to_order_lines(store.order_lines(conn, order["order_id"]))
    shipment = None
    if order["shipped_at"] is not None:
        shipment = ShipmentView(carrier=order["carrier"], tracking_number=order["tracking_number"],
                                distribution_centre=order["distribution_centre"], shipped_at=order["shipped_at"])
    return OrderView(
        **{k: order[k] for k in ("order_id", "customer_id", "status", "confirmation_number", "channel", "placed_at",
                                 "confirmed_at", "payment_mode", "language", "standing_order_id", "occurrence",
                                 "priced_note")},
        lines=[LineView(sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price,
                        line_total=line.line_total) for line in lines],
        total=Money(amount=order["total_amount"], currency=order["currency"]),
        delivery=Delivery.model_validate(order["delivery"]), shipment=shipment,
        timeline=[TimelineEntry(**t) for t in store.timeline(conn, order["order_id"])])


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app("orders", description="Order status, timelines and shipping.")

    def visible_order(conn, order_id: str, principal: Principal) -> dict:
        order = store.get_order(conn, order_id)
        if order is None or not principal.can_act_for_customer(order["customer_id"]):
            raise _not_found(order_id)
        return order

    @app.get("/orders/{order_id}", response_model=OrderView)
    def get_order(order_id: str, principal: Principal = Depends(require(*ANYONE))):
        with ctx.pool.connection() as conn:
            return order_view(conn, visible_order(conn, order_id, principal))

    @app.get("/customers/{customer_id}/orders", response_model=list[OrderSummary])
    def customer_orders(customer_id: str, limit: int = Query(100, ge=1, le=500),
                        principal: Principal = Depends(require(*ANYONE))):
        if not principal.can_act_for_customer(customer_id):
            raise HTTPException(404, f"no customer {customer_id}")
        with ctx.pool.connection() as conn:
            rows = store.orders_of_customer(conn, customer_id, limit)
        return [OrderSummary(**{k: v for k, v in r.items() if k not in ("total_amount", "currency")},
                             total=Money(amount=r["total_amount"], currency=r["currency"])) for r in rows]

    @app.post("/orders/{order_id}/shipments", response_model=OrderView, status_code=201)
    def ship(order_id: str, body: ShipmentRequest, response: Response,
             principal: Principal = Depends(require("warehouse"))):
        """The distribution centre reports that the order left: it becomes shipped and OrderShipped is
        published. Reporting the same parcel again answers 200 and changes nothing."""
        result = distribution_centre.record_shipment(
            ctx, order_id, body.carrier, body.tracking_number, body.distribution_centre,
            reported_by=f"{body.distribution_centre} ({principal.role} {principal.subject})")
        if result is None:
            raise _not_found(order_id)
        decision, order = result
        if decision.verdict in ("refuse", "wait"):
            raise HTTPException(409, f"order {order_id} cannot ship: {decision.reason}")
        if decision.verdict == "ignore":
            if order["tracking_number"] != body.tracking_number or order["carrier"] != body.carrier:
                raise HTTPException(409, f"order {order_id} already shipped with {order['carrier']} "
                                         f"{order['tracking_number']}")
            response.status_code = 200
        with ctx.pool.connection() as conn:
            return order_view(conn, order)

    @app.post("/orders/{order_id}/cancel", response_model=OrderView)
    def cancel(order_id: str, body: CancelRequest,
               principal: Principal = Depends(require("customer", "operator", "salesperson"))):
        """Cancel an order that has not shipped yet (OrderCancelled). Cancelling again changes nothing."""
        with ctx.unit_of_work() as uow:
            order = store.get_order(uow.conn, order_id, lock=True)
            if order is None or not principal.can_act_for_customer(order["customer_id"]):
                raise _not_found(order_id)
            decision = handlers.cancel(uow, order, body.reason, f"{principal.role} {principal.subject}")
            if decision.verdict == "refuse":
                raise HTTPException(409, f"order {order_id} cannot be cancelled: {decision.reason}")
            return order_view(uow.conn, store.get_order(uow.conn, order_id))

    return app
