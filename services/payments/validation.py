"""Checks an OrderPlaced before any money moves.

Orders may be published directly by upstream systems (the EDI gateway), so the
payments service trusts nothing about their arithmetic: it re-checks quantities,
currencies and the total with exact Decimal arithmetic (never float).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from schemas.events.orders import OrderPlaced
from schemas.types import Money

CENT = Decimal("0.01")
#: the largest amount our books (numeric(14,2)) can hold
LARGEST_AMOUNT = Decimal("999999999999.99")


@dataclass(frozen=True)
class Decline:
    """Why payment is refused: a PaymentDeclined reason_code and a message safe to show the customer."""

    reason_code: str
    message: str


def check_order(order: OrderPlaced, supported_currencies: frozenset[str]) -> Decline | None:
    """Return a Decline if the order cannot be charged as it stands, else None."""
    currency = order.total.currency
    for n, line in enumerate(order.lines, start=1):
        if line.quantity <= 0:
            return Decline("invalid_order", f"line {n} ({line.sku}) has quantity {line.quantity}; "
                                            "every line must order at least 1 unit")
    for n, line in enumerate(order.lines, start=1):
        if line.unit_price.currency != currency:
            return Decline("currency_mismatch", f"line {n} ({line.sku}) is priced in {line.unit_price.currency} "
                                                f"but the order total is in {currency}")
    if currency not in supported_currencies:
        accepted = ", ".join(sorted(supported_currencies)) or "none"
        return Decline("currency_mismatch", f"orders in {currency} are not accepted (accepted: {accepted})")
    lines_sum = Money(amount=sum((line.unit_price.amount * line.quantity for line in order.lines), Decimal(0)),
                      currency=currency)
    if order.total.amount != lines_sum.amount:
        return Decline("invalid_order", f"total {order.total} does not match the sum of the lines {lines_sum}")
    if order.total.amount <= 0:
        return Decline("invalid_order", f"total {order.total} must be greater than zero")
    if order.total.amount > LARGEST_AMOUNT:
        return Decline("invalid_order", f"total {order.total} is over the largest amount we accept "
                                        f"({format(LARGEST_AMOUNT, 'f')} {currency})")
    if order.total.amount != order.total.amount.quantize(CENT):
        return Decline("invalid_order", f"total {order.total} has fractions of a cent; it cannot be charged")
    return None
