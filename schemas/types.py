"""Value types shared by the event contracts: money, order lines, delivery details."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal

from babel.numbers import list_currencies
from pydantic import AfterValidator, BeforeValidator, BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

ISO_4217 = frozenset(list_currencies())


def _check_currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"unknown ISO 4217 currency {code!r}")
    return code


def _utc(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset (RFC 3339)")
    return v.astimezone(timezone.utc)


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code"),
                     AfterValidator(_check_currency)]
UtcDateTime = Annotated[datetime, AfterValidator(_utc),
                        Field(description="RFC 3339 timestamp, UTC")]
def _no_float(v):
    if isinstance(v, float):
        raise ValueError("money must be a decimal string, never a float")
    return v


# Money amounts travel as decimal strings: a float cannot hold 0.10 exactly.
DecimalString = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(description="decimal amount as a string, e.g. \"12.50\"", allow_inf_nan=False),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
Quantity = Annotated[int, Field(gt=0, le=1_000_000, description="units ordered, > 0")]
Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9\-]{1,39}$", description="catalog stock-keeping unit")]
Language = Literal["en", "es", "fr", "pl", "vi", "hr"]
PaymentMode = Literal["card", "account"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(Frozen):
    amount: DecimalString = Field(description="amount in major units as a decimal string")
    currency: Currency

    def __add__(self, other: "Money") -> "Money":
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)

    @classmethod
    def zero(cls, currency: str) -> "Money":
        return cls(amount=Decimal("0.00"), currency=currency)

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"


class OrderLine(Frozen):
    sku: Sku
    name: str = Field(max_length=200, description="product name at the time of ordering")
    quantity: int = Field(description="units ordered; upstream orders with a quantity <= 0 are declined by payments")
    unit_price: Money = Field(description="catalog unit price when the order was placed")

    @property
    def line_total(self) -> Money:
        return Money(amount=self.unit_price.amount * self.quantity, currency=self.unit_price.currency)


class StandingLine(Frozen):
    sku: Sku
    quantity: Quantity


class Delivery(Frozen):
    recipient: str = Field(min_length=1, max_length=200, description="person or department receiving the goods")
    address_lines: list[str] = Field(min_length=1, max_length=4, description="street address lines")
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code")
    phone: str = Field(min_length=3, max_length=40)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254,
                       description="where order and shipping confirmations are sent")


_TOKEN = re.compile(r"^tok_[A-Za-z0-9_]{4,64}$")


class Payment(Frozen):
    """How the order is paid. Card payments carry only a gateway token, never a card number."""

    mode: PaymentMode
    card_token: str | None = Field(default=None, description="payment-gateway token (tok_...); never a card number")

    @field_validator("card_token")
    @classmethod
    def _token_only(cls, v: str | None) -> str | None:
        if v is not None and not _TOKEN.match(v):
            raise ValueError("card_token must be a gateway token like tok_xxx (card numbers are never accepted)")
        return v

    @model_validator(mode="after")
    def _token_matches_mode(self) -> "Payment":
        if self.mode == "card" and not self.card_token:
            raise ValueError("card payment needs a card_token")
        if self.mode == "account" and self.card_token:
            raise ValueError("account payment takes no card_token")
        return self
