"""Standing orders over HTTP, for the customer and for a salesperson or operator acting for them.

The commands are in commands.py; their domain errors are answered as problem+json by
runtime/http.py, so nothing here builds an error."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Path, Request, Response
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from runtime.access import ACTS_FOR_CUSTOMERS, customer_or_404
from runtime.auth import Principal, require
from runtime.http import IdempotencyKey, make_app
from runtime.pages import Page, PageParams, page, page_params
from runtime.service import ServiceContext
from schemas import Delivery, Payment, StandingLine
from schemas.events.scheduling import Interval
from schemas.types import COUNT_BOUNDS, ID_BOUNDS, Day, Language, TimeZoneName, integral
from services.scheduler import commands, store
from services.scheduler.views import StandingOrderView, view

anyone = require(*ACTS_FOR_CUSTOMERS)
StandingOrderId = Annotated[str, Path(**ID_BOUNDS, description="the standing order id")]
CustomerId = Annotated[str, Path(**ID_BOUNDS, description="the customer (organisation) id")]
NOT_FOUND = {404: {"description": "no such standing order (or not one of the caller's, for a customer)"}}
CHANGE = {**NOT_FOUND, 409: {"description": "the change does not apply in the order's state (e.g. it ended), "
                                            "or the new lines name a SKU twice (duplicate-sku)"}}


_ZONES = frozenset(available_timezones())


def _known_zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError("not an IANA time zone name (e.g. Europe/Warsaw)")
    return name


#: the schema lists every zone name this host knows, so a schema-valid request is never refused for it
TimeZone = Annotated[TimeZoneName, AfterValidator(_known_zone), WithJsonSchema(
    {"type": "string", "enum": sorted(_ZONES), "description": "IANA time zone of the customer, e.g. Europe/Warsaw"})]


class StandingOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = Field(default=None, **{**ID_BOUNDS, "max_length": 64},
                                    description="defaults to the calling customer; staff must name one")
    lines: list[StandingLine] = Field(min_length=1, max_length=200)
    delivery: Delivery
    payment: Payment = Payment(mode="account")
    language: Language = "en"
    interval: Interval
    start_date: Day = Field(description="date of the first occurrence, in the customer's time zone")
    time_zone: TimeZone = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: Day | None = Field(default=None, description="last possible date (inclusive); none = until further notice")
    max_occurrences: int | None = Field(default=None, **{**COUNT_BOUNDS, "le": 10_000},
                                        description="end after this many occurrences")
    _integral = field_validator("max_occurrences", mode="before")(integral)  # 3.0 is a JSON integer too


class StandingOrderPatch(BaseModel):
    """Applies to occurrences not yet placed. Give lines, delivery or both (never null: leave a
    field out to keep it)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    # Not Optional: null is not a value here, only absence is (the schema then says exactly that).
    lines: list[StandingLine] = Field(default=None, min_length=1, max_length=200, validate_default=False)
    delivery: Delivery = Field(default=None, validate_default=False)

    @model_validator(mode="after")
    def _something(self) -> "StandingOrderPatch":
        if self.lines is None and self.delivery is None:
            raise ValueError("give lines, delivery or both")
        return self


class SkipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    occurrence_date: Day = Field(description="the local date of the occurrence to skip (one of `upcoming`, or "
                                             "any later date of the schedule)")


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app(ctx=ctx, title="scheduler", description="Standing orders: create, list, pause, resume, skip any "
                   "future occurrence, change, cancel. Errors are RFC 9457 problem+json; lists are pages "
                   "(docs/api.md).")

    def change(so_id: str, who: Principal, what: commands.Change) -> StandingOrderView:
        with ctx.unit_of_work() as uow:
            order = commands.change(uow, so_id, who, what)
            return view(order, uow.now(), store.emitted_occurrences(uow.conn, so_id))

    @app.post("/standing-orders", status_code=201, response_model=StandingOrderView,
              responses={200: {"model": StandingOrderView,
                               "description": "the same Idempotency-Key again: the standing order it created"},
                         403: {"description": "a customer asked for a standing order of another customer, or a "
                                              "staff key named no customer_id (customer-required)"},
                         409: {"description": "refused: start_date already passed in time_zone, end_date before "
                                              "start_date, or a SKU twice (duplicate-sku)"}})
    def create(body: StandingOrderIn, response: Response, idempotency_key: IdempotencyKey,
               who: Principal = Depends(anyone)):
        """Create a standing order (StandingOrderChanged `created`). Its id is `so-<32 hex>`."""
        with ctx.unit_of_work() as uow:
            terms = {name: getattr(body, name) for name in StandingOrderIn.model_fields}  # the models, not dicts
            order, created = commands.request_standing_order(uow, who, terms, idempotency_key)
            if not created:
                response.status_code = 200
            return view(order, uow.now(), store.emitted_occurrences(uow.conn, order.standing_order_id))

    @app.get("/standing-orders/{standing_order_id}", response_model=StandingOrderView, responses=NOT_FOUND)
    def get_one(standing_order_id: StandingOrderId, who: Principal = Depends(anyone)):
        with ctx.pool.connection() as conn:
            order = commands.load(conn, standing_order_id, who)
            return view(order, ctx.clock.now(), store.emitted_occurrences(conn, standing_order_id))

    @app.get("/customers/{customer_id}/standing-orders", response_model=Page[StandingOrderView],
             responses={404: {"description": "a customer asked for another customer's standing orders"}})
    def for_customer(request: Request, customer_id: CustomerId, params: PageParams = Depends(page_params),
                     who: Principal = Depends(anyone)):
        """A customer's standing orders, oldest first."""
        customer_or_404(customer_id, who)
        with ctx.pool.connection() as conn:
            orders, total = store.for_customer(conn, customer_id, params.limit, params.offset)
        now = ctx.clock.now()
        return page(request, [view(o, now) for o in orders], params, total)

    @app.post("/standing-orders/{standing_order_id}/pause", response_model=StandingOrderView, responses=CHANGE)
    def pause(standing_order_id: StandingOrderId, who: Principal = Depends(anyone)):
        return change(standing_order_id, who, commands.pause)

    @app.post("/standing-orders/{standing_order_id}/resume", response_model=StandingOrderView, responses=CHANGE)
    def resume(standing_order_id: StandingOrderId, who: Principal = Depends(anyone)):
        return change(standing_order_id, who, commands.resume)

    @app.post("/standing-orders/{standing_order_id}/skip-next", response_model=StandingOrderView, responses=CHANGE)
    def skip_next(standing_order_id: StandingOrderId, who: Principal = Depends(anyone)):
        """Skip the occurrence that would be placed next."""
        return change(standing_order_id, who, commands.skip_next)

    @app.post("/standing-orders/{standing_order_id}/skips", response_model=StandingOrderView,
              responses={**NOT_FOUND, 409: {"description": "no occurrence falls on that date (not-an-occurrence), "
                                                           "it is already placed, or the order has ended"}})
    def skip(standing_order_id: StandingOrderId, body: SkipRequest, who: Principal = Depends(anyone)):
        """Skip any occurrence not yet placed, by its local date. Skipping it again changes nothing."""
        return change(standing_order_id, who, commands.skip_on(body.occurrence_date))

    @app.patch("/standing-orders/{standing_order_id}", response_model=StandingOrderView, responses=CHANGE)
    def patch(standing_order_id: StandingOrderId, body: StandingOrderPatch, who: Principal = Depends(anyone)):
        return change(standing_order_id, who, commands.amend(body.lines, body.delivery))

    @app.post("/standing-orders/{standing_order_id}/cancel", response_model=StandingOrderView, responses=CHANGE)
    def cancel(standing_order_id: StandingOrderId, who: Principal = Depends(anyone)):
        return change(standing_order_id, who, commands.cancel)

    return app
