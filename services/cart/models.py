"""The HTTP API's request and response bodies (the OpenAPI document is generated from these)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.types import Delivery, Language, Money, Payment, Quantity


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    unit_price: Money = Field(description='price of one unit, e.g. {"amount": "1.85", "currency": "EUR"}')
    active: bool = Field(default=True, description="inactive products stay visible but cannot be ordered")


class ProductOut(BaseModel):
    sku: str
    name: str
    description: str
    unit_price: Money
    active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int = Field(description="products matching the query, over all pages")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, null on the last page")


class LineIn(_Body):
    quantity: Quantity = Field(description="units wanted; replaces the quantity already in the cart")


class LineOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price: Money = Field(description="current catalog price")
    line_total: Money
    active: bool = Field(description="false when the product is no longer sold: remove it before checkout")


class CartOut(BaseModel):
    cart_id: str
    customer_id: str
    status: Literal["open", "checked_out"]
    currency: str | None = Field(description="set by the first product added; one currency per cart")
    lines: list[LineOut]
    total: Money | None = Field(description="sum of the lines at current catalog prices; null when empty")
    order_id: str | None = None
    standing_order_id: str | None = None
    created_at: datetime
    updated_at: datetime
    checked_out_at: datetime | None = None


class RecurrenceIn(_Body):
    """Turns the checkout into a standing order: the cart is ordered again every N days/weeks/months."""
    every: int = Field(ge=1, le=366)
    unit: Literal["days", "weeks", "months"]
    start_date: date = Field(description="date of the first order, in time_zone")
    time_zone: str = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: date | None = Field(default=None, description="last date an order may be placed (inclusive)")
    max_occurrences: int | None = Field(default=None, ge=1, le=10_000)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("time_zone must be an IANA time zone such as Europe/Warsaw") from None
        return v

    @model_validator(mode="after")
    def _ends_after_start(self) -> "RecurrenceIn":
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        return self


class CheckoutIn(_Body):
    delivery: Delivery
    payment: Payment = Field(description="card (with a gateway token tok_..., never a card number) or account")
    language: Language = Field(default="en", description="language of the order emails")
    recurrence: RecurrenceIn | None = Field(default=None, description="present for a standing order")


class CheckoutOut(BaseModel):
    cart_id: str
    order_id: str | None = Field(default=None, description="the order placed (one-off checkout)")
    standing_order_id: str | None = Field(default=None, description="the standing order requested")
    total: Money = Field(description="order total; for a standing order, one occurrence at today's prices")
    first_order_on: date | None = Field(default=None, description="standing order: date of the first order")
