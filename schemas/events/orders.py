"""The order's journey: placed, paid or declined, confirmed, shipped, cancelled."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.envelope import Event
from schemas.types import Delivery, Language, Money, OrderLine, Payment, UtcDateTime


class OrderPlaced(Event):
    """A customer (web checkout, EDI gateway or a standing order) placed an order."""
    key_field = "order_id"
    order_id: str = Field(min_length=1, max_length=64, description="order id; the Kafka key")
    customer_id: str = Field(min_length=1, max_length=64, description="customer (organisation) id")
    lines: list[OrderLine] = Field(min_length=1, max_length=200)
    total: Money = Field(description="sum of the lines; payments declines an order whose total does not match")
    delivery: Delivery
    payment: Payment
    language: Language = Field(default="en", description="customer's language for emails")
    channel: Literal["web", "edi", "standing_order", "api"] = Field(default="web", description="where the order came from")
    placed_at: UtcDateTime
    standing_order_id: str | None = Field(default=None, description="set when the order is an occurrence of a standing order")
    occurrence: int | None = Field(default=None, ge=1, description="occurrence number within the standing order")
    priced_note: str | None = Field(default=None, description="how the order was priced, e.g. catalog price on the occurrence date")


class PaymentVerified(Event):
    """Payment for an order was authorised by the card gateway or charged to the supplier account."""
    key_field = "order_id"
    order_id: str
    customer_id: str
    amount: Money
    method: Literal["card", "account"]
    charge_reference: str = Field(description="gateway authorisation id or account ledger entry id")
    verified_at: UtcDateTime


class PaymentDeclined(Event):
    """Payment for an order was refused; the order will not be fulfilled."""
    key_field = "order_id"
    order_id: str
    customer_id: str
    method: Literal["card", "account"]
    reason_code: Literal["insufficient_funds", "suspected_fraud", "credit_limit_exceeded", "no_account",
                         "account_suspended", "currency_mismatch", "invalid_order", "gateway_error"]
    message: str = Field(description="human explanation, safe to show the customer")
    declined_at: UtcDateTime


class OrderConfirmed(Event):
    """Payment verified: the order has a confirmation number and goes to a distribution centre."""
    key_field = "order_id"
    order_id: str
    customer_id: str
    confirmation_number: str = Field(description="human-friendly, unique, e.g. SB-7K3M-9QXD")
    lines: list[OrderLine]
    total: Money
    delivery: Delivery
    language: Language = "en"
    confirmed_at: UtcDateTime
    standing_order_id: str | None = None
    occurrence: int | None = None
    priced_note: str | None = None


class OrderShipped(Event):
    """The order left the distribution centre that filled it."""
    key_field = "order_id"
    order_id: str
    customer_id: str | None = Field(default=None, description="may be omitted by upstream warehouse systems")
    carrier: str = Field(min_length=1, max_length=100)
    tracking_number: str = Field(min_length=1, max_length=100)
    distribution_centre: str = Field(min_length=1, max_length=100)
    shipped_at: UtcDateTime


class OrderCancelled(Event):
    """The order was cancelled before shipping, or failed (declined payment, inactive product)."""
    key_field = "order_id"
    order_id: str
    customer_id: str
    reason: str
    cancelled_at: UtcDateTime
