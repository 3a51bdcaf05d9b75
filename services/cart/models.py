"""The HTTP API's request and response bodies (the OpenAPI document is generated from these)."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.business_settings import tokens_sentence
from schemas.events.scheduling import Interval
from schemas.types import (COUNT_BOUNDS, ID_BOUNDS, TOKEN_PATTERN, Currency, Day, Delivery,
                           KnownTimeZone, Language, Money, Payment, Quantity, integral, text)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: a catalog price: more than zero, at most 999999999999.99 (numeric(14,2)), in whole cents
PRICE_PATTERN = r"^([1-9][0-9]{0,11}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$"


class PriceIn(_Body):
    amount: str = Field(pattern=PRICE_PATTERN, max_length=15,
                        description='decimal string above zero with at most two decimals, e.g. "1.85"')
    currency: Currency = Field(description="one the store sells in (SALESBUS_CURRENCIES; another is a 409)")

    def money(self) -> Money:
        return Money(amount=Decimal(self.amount), currency=self.currency)


class ProductIn(_Body):
    name: text(200, 1)
    description: text(4000) = ""
    unit_price: PriceIn = Field(description='price of one unit, e.g. {"amount": "1.85", "currency": "EUR"}')
    active: bool = Field(default=True, description="inactive products stay visible but cannot be ordered")


class ProductOut(BaseModel):
    sku: str
    name: str
    description: str
    unit_price: Money
    active: bool
    created_at: datetime
    updated_at: datetime


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


class StandingOrderTermsIn(_Body):
    """Turns the checkout into a standing order: the cart is ordered again every interval. The same
    fields as the scheduler's POST /standing-orders."""
    interval: Interval = Field(description='how often, e.g. {"every": 2, "unit": "weeks"}')
    start_date: Day = Field(description="date of the first order, in time_zone; today or later")
    time_zone: KnownTimeZone = Field(description="IANA time zone of the customer, e.g. Europe/Warsaw")
    end_date: Day | None = Field(default=None, description="last date an order may be placed (inclusive); "
                                                           "before start_date: 409 refused")
    max_occurrences: int | None = Field(default=None, **{**COUNT_BOUNDS, "le": 10_000},
                                        description="end after this many orders")

    _integral = field_validator("max_occurrences", mode="before")(integral)  # 3.0 is a JSON integer too


TEST_TOKENS = tokens_sentence()


class CardPaymentIn(_Body):
    """Paid by card through the payment gateway: only its token comes here, never a card number."""
    mode: Literal["card"]
    card_token: str = Field(max_length=68, json_schema_extra={"pattern": TOKEN_PATTERN},
                            description="the gateway's token for the card (tok_...), never a card number. "
                                        + TEST_TOKENS)

    @field_validator("card_token")
    @classmethod
    def _token_only(cls, v: str) -> str:
        # the schema's pattern, with a sentence that says why (and never repeats what was sent)
        if not re.fullmatch(TOKEN_PATTERN, v):
            raise ValueError("card_token must be a gateway token like tok_xxx (card numbers are never accepted)")
        return v


class AccountPaymentIn(_Body):
    """Charged to the customer's supplier account (within its credit limit), invoiced."""
    mode: Literal["account"]


PaymentIn = Annotated[CardPaymentIn | AccountPaymentIn, Field(discriminator="mode")]


class CheckoutIn(_Body):
    delivery: Delivery
    payment: PaymentIn = Field(description="card (with a gateway token tok_..., required) or account (none)")
    language: Language = Field(default="en", description="language of the order emails")
    standing_order: StandingOrderTermsIn | None = Field(
        default=None, description="present for a standing order: the cart is ordered again every interval")

    def event_payment(self) -> Payment:
        return Payment(mode=self.payment.mode, card_token=getattr(self.payment, "card_token", None))


class OrderLineIn(_Body):
    sku: str = Field(**ID_BOUNDS, description="catalog SKU, e.g. BULB-LED-9W (an unknown one is a 404)")
    quantity: Quantity = Field(description="units wanted")


class DirectCheckoutIn(CheckoutIn):
    """A checkout that carries its lines: what a buyer who knows what to reorder (or a purchasing
    system) sends in one call, instead of creating a cart and putting each line in it first."""
    #: 200: what OrderPlaced carries (services/cart/pricing.py MAX_LINES)
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200,
                                     description="each SKU at most once (twice: 409 refused)")


class CheckoutOut(BaseModel):
    cart_id: str
    order_id: str | None = Field(default=None, description="the order placed (one-off checkout)")
    standing_order_id: str | None = Field(default=None, description="the standing order requested")
    total: Money = Field(description="order total; for a standing order, one occurrence at today's prices")
    first_order_on: date | None = Field(default=None, description="standing order: date of the first order")
