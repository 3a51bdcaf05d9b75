"""Order status for customers and staff, and the distribution centres' shipping endpoint.

Customers see only their own orders: someone else's order answers 404, exactly like one that
does not exist, so order ids cannot be probed (runtime/access.py). Staff roles (operator,
warehouse, salesperson) see every order and can look orders up by status, centre, date and
e-mail. The commands behind the POSTs are in commands.py; their domain errors become
problem+json answers in runtime/http.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.access import ACTS_FOR_CUSTOMERS, ANYONE, STAFF, customer_or_404, owned_or_404
from runtime.auth import Principal, require
from runtime.http import make_app
from runtime.pages import Page, PageParams, page, page_params
from runtime.service import ServiceContext
from schemas import Delivery, Money
from schemas.types import ID_BOUNDS, ID_PATTERN, UtcInstant, line, line_bounds, text
from services.orders import commands, store
from services.orders.confirmation import PATTERN as CONFIRMATION
from services.orders.distribution_centre import CENTRE_SQL
from services.orders.lifecycle import State

OrderId = Annotated[str, Path(**ID_BOUNDS, description="the order id")]
OrderRef = Annotated[str, Path(**ID_BOUNDS, description="the order id, or its confirmation number (SB-XXXX-XXXX)")]
CustomerId = Annotated[str, Path(**ID_BOUNDS, description="the customer (organisation) id")]
NOT_FOUND = {404: {"description": "no such order (or not one of the caller's, for a customer)"}}


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
    status: State
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
    customer_id: str
    status: State
    confirmation_number: str | None
    total: Money
    channel: str
    placed_at: datetime
    confirmed_at: datetime | None
    shipped_at: datetime | None
    standing_order_id: str | None
    occurrence: int | None
    distribution_centre: str = Field(description="the centre that shipped it, or the one that will (by delivery country)")


class ShipmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: line(100, 1)
    tracking_number: line(100, 1)
    distribution_centre: line(100, 1)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: text(500, 1) = "cancelled at the customer's request"


def order_view(conn, order: dict) -> OrderView:
    lines = commands.to_order_lines(store.order_lines(conn, order["order_id"]))
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


def summary(row: dict) -> OrderSummary:
    return OrderSummary(**{k: v for k, v in row.items() if k not in ("total_amount", "currency")},
                        total=Money(amount=row["total_amount"], currency=row["currency"]))


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app(ctx=ctx, title="orders", description="Order status, timelines, lookups and shipping. "
                   "Error answers are RFC 9457 problem+json; lists are pages (docs/api.md).")

    @app.get("/orders/{order_ref}", response_model=OrderView, responses=NOT_FOUND)
    def get_order(order_ref: OrderRef, principal: Principal = Depends(require(*ANYONE))):
        """An order by its id or by the confirmation number the customer has from the e-mail (SB-XXXX-XXXX)."""
        with ctx.pool.connection() as conn:
            order = store.get_order(conn, order_ref)
            if order is None and CONFIRMATION.fullmatch(order_ref.upper()):
                order = store.get_order_by_confirmation(conn, order_ref.upper())
            owned_or_404(order, order and order["customer_id"], principal, f"order {order_ref}")
            return order_view(conn, order)

    @app.get("/orders", response_model=Page[OrderSummary])
    def find_orders(request: Request, params: PageParams = Depends(page_params),
                    status: State | None = Query(None, description="only orders in this state"),
                    distribution_centre: str | None = Query(None, **line_bounds(100), description=(
                        "the centre that shipped the order or, before it ships, the one serving its "
                        "delivery country (e.g. DC Zagreb)")),
                    placed_from: UtcInstant | None = Query(None, description="placed at or after (ISO 8601)"),
                    placed_to: UtcInstant | None = Query(None, description="placed before (ISO 8601)"),
                    customer_id: str | None = Query(None, **ID_BOUNDS, description="one customer's orders"),
                    email: str | None = Query(None, max_length=254, pattern=ID_PATTERN,
                                              description="the delivery e-mail (case-insensitive)"),
                    principal: Principal = Depends(require(*STAFF))):
        """Orders for the warehouse (what to ship: status=confirmed&distribution_centre=...) and for
        support (a customer's orders by e-mail), oldest first. Staff only."""
        filters = {"status": status, "distribution_centre": distribution_centre, "placed_from": placed_from,
                   "placed_to": placed_to, "customer_id": customer_id, "email": email}
        with ctx.pool.connection() as conn:
            rows, total = store.find_orders(conn, filters, params.limit, params.offset, CENTRE_SQL)
        return page(request, [summary(r) for r in rows], params, total)

    @app.get("/customers/{customer_id}/orders", response_model=Page[OrderSummary],
             responses={404: {"description": "a customer asked for another customer's orders"}})
    def customer_orders(request: Request, customer_id: CustomerId, params: PageParams = Depends(page_params),
                        principal: Principal = Depends(require(*ANYONE))):
        """A customer's orders, newest first."""
        customer_or_404(customer_id, principal)
        with ctx.pool.connection() as conn:
            rows, total = store.orders_of_customer(conn, customer_id, params.limit, params.offset, CENTRE_SQL)
        return page(request, [summary(r) for r in rows], params, total)

    @app.post("/orders/{order_id}/shipments", response_model=OrderView, status_code=201,
              responses={200: {"model": OrderView, "description": "the same parcel reported again: nothing changed"},
                         **NOT_FOUND, 409: {"description": "the order cannot ship (not confirmed, cancelled, or "
                                                          "already shipped with another parcel)"}})
    def ship(order_id: OrderId, body: ShipmentRequest, response: Response,
             principal: Principal = Depends(require("warehouse"))):
        """The distribution centre reports that the order left: it becomes shipped and OrderShipped is
        published. Reporting the same parcel again answers 200 and changes nothing."""
        order, changed = commands.record_shipment(
            ctx.unit_of_work, order_id, body.carrier, body.tracking_number, body.distribution_centre,
            reported_by=f"{body.distribution_centre} ({principal.role} {principal.subject})")
        if not changed:
            response.status_code = 200
        with ctx.pool.connection() as conn:
            return order_view(conn, order)

    @app.post("/orders/{order_id}/cancel", response_model=OrderView,
              responses={**NOT_FOUND, 409: {"description": "the order can no longer be cancelled (shipped)"}})
    def cancel(order_id: OrderId, body: CancelRequest,
               principal: Principal = Depends(require(*ACTS_FOR_CUSTOMERS))):
        """Cancel an order that has not shipped yet (OrderCancelled). Cancelling again changes nothing."""
        with ctx.unit_of_work() as uow:
            return order_view(uow.conn, commands.cancel_order(uow, order_id, body.reason, principal))

    return app
