"""The order's journey: placed, paid or declined, confirmed, shipped, cancelled."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from schemas.envelope import Event
from schemas.types import (COUNT_BOUNDS, ID_BOUNDS, BookMoney, Delivery, Id, Language, Money, OrderLine, Payment,
                           UtcDateTime, integral, line, text, text_bounds)


class OrderPlaced(Event):
    """A customer (web checkout, EDI gateway or a standing order) placed an order."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    lines: list[OrderLine] = Field(min_length=1, max_length=200,
                                   description="ordered products: SKU, name, quantity and unit price, one per product")
    total: Money = Field(description="sum of the lines; payments declines an order whose total does not match")
    delivery: Delivery = Field(description="where and to whom the goods go")
    payment: Payment = Field(description="how the order is paid: a card token or the customer's supplier account")
    language: Language = Field(default="en", description="customer's language for emails")
    channel: Literal["web", "edi", "standing_order", "api"] = Field(default="web", description="where the order came from")
    placed_at: UtcDateTime
    standing_order_id: str | None = Field(
        default=None, **ID_BOUNDS, description="set when the order is an occurrence of a standing order")
    occurrence: int | None = Field(
        default=None, **COUNT_BOUNDS, description="occurrence number within the standing order")
    priced_note: str | None = Field(
        default=None, **text_bounds(1000),
        description="how the order was priced, e.g. catalog price on the occurrence date")

    _integral = field_validator("occurrence", mode="before")(integral)


class PaymentVerified(Event):
    """Payment for an order was authorised by the card gateway or charged to the supplier account."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    amount: BookMoney = Field(description="amount authorised or charged: the order total")
    method: Literal["card", "account"] = Field(
        description="card (gateway authorisation) or account (charged to the supplier account)")
    charge_reference: Id = Field(description="gateway authorisation id or account ledger entry id")
    verified_at: UtcDateTime


class PaymentDeclined(Event):
    """Payment for an order was refused; the order will not be fulfilled."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    method: Literal["card", "account"] = Field(description="how payment was attempted: card or account")
    reason_code: Literal["insufficient_funds", "suspected_fraud", "card_declined", "credit_limit_exceeded", "no_account",
                         "account_suspended", "account_on_hold", "currency_mismatch", "invalid_order",
                         "gateway_error"] = Field(
        description="why payment was refused, machine-readable")
    message: text(2000) = Field(description="human explanation, safe to show the customer")
    declined_at: UtcDateTime


class OrderConfirmed(Event):
    """Payment verified: the order has a confirmation number and goes to a distribution centre."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    confirmation_number: line(40, 1) = Field(description="human-friendly, unique, e.g. SB-7K3M-9QXD")
    lines: list[OrderLine] = Field(min_length=1, max_length=200, description="the order's lines, as placed")
    total: BookMoney = Field(description="order total, as paid")
    delivery: Delivery = Field(description="where and to whom the goods go")
    language: Language = Field(default="en", description="customer's language for emails")
    confirmed_at: UtcDateTime
    standing_order_id: str | None = Field(
        default=None, **ID_BOUNDS, description="set when the order is an occurrence of a standing order")
    occurrence: int | None = Field(
        default=None, **COUNT_BOUNDS, description="occurrence number within the standing order")
    priced_note: str | None = Field(
        default=None, **text_bounds(1000),
        description="how the order was priced, e.g. catalog price on the occurrence date")

    _integral = field_validator("occurrence", mode="before")(integral)


class OrderShipped(Event):
    """The order left the distribution centre that filled it."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: str | None = Field(default=None, **ID_BOUNDS,
                                    description="may be omitted by upstream warehouse systems")
    carrier: text(100, 1) = Field(description="carrier that took the goods, e.g. DPD")
    tracking_number: text(100, 1) = Field(description="the carrier's tracking number")
    distribution_centre: text(100, 1) = Field(
        description="distribution centre that filled the order")
    shipped_at: UtcDateTime


class OrderCancelled(Event):
    """The order was cancelled before shipping, or failed (declined payment, inactive product)."""
    key_field = "order_id"
    order_id: Id = Field(description="order id; the Kafka key")
    customer_id: Id = Field(description="customer (organisation) id")
    reason: text(2000) = Field(description="why the order was cancelled, human-readable")
    cancelled_at: UtcDateTime
