"""Checks an OrderPlaced before any money moves.

Orders may be published directly by upstream systems (the EDI gateway), so the
payments service trusts nothing about their arithmetic: it re-checks quantities,
prices, currencies and the total with exact Decimal arithmetic (never float).

The contract (schemas.types) lets through what is well-formed but wrong as business — a
negative price, a quantity of 0, tenths of a cent, a total over what the books hold — so that it
ends as a PaymentDeclined the customer is told about, not as a dead letter. Whatever passes
here fits the orders service's columns (numeric(14,2) for the total and every unit price), so
payments never charges an order that orders then cannot record.
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal

from schemas.events.orders import OrderPlaced
from schemas.types import BOOKS_SCALE, minor_digits

CENT = Decimal("0.01")
#: the largest amount our books (numeric(14,2) in orders and payments) can hold
LARGEST_AMOUNT = Decimal("999999999999.99")
#: enough digits for any sum the contract allows (200 lines x 10^6 units x a 14+4 digit price is
#: under 2 x 10^22, 27 digits: the default context's 28 would just hold it, and a thread may have
#: set another): the comparison with the total stays exact, or raises, never rounds
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


@dataclass(frozen=True)
class Decline:
    """Why payment is refused: a PaymentDeclined reason_code and a message safe to show the customer."""

    reason_code: str
    message: str


def charge_scale(currency: str) -> int:
    """Decimal places an amount may have to be charged and booked: the currency's own (JPY 0,
    EUR 2) but never more than the books keep (KWD has 3; numeric(14,2) would round the third)."""
    return min(minor_digits(currency), BOOKS_SCALE)


def _fits_scale(amount: Decimal, scale: int) -> bool:
    return amount == amount.quantize(Decimal(1).scaleb(-scale))


def _fractions(currency: str, scale: int) -> str:
    if scale == minor_digits(currency) == 2:
        return "fractions of a cent"
    return f"fractions of the smallest {currency} amount we book ({scale} decimal places)"


def _amount(value: Decimal, currency: str) -> str:
    return f"{format(value, 'f')} {currency}"


def check_order(order: OrderPlaced, supported_currencies: frozenset[str]) -> Decline | None:
    """Return a Decline if the order cannot be charged as it stands, else None."""
    currency = order.total.currency
    for n, line in enumerate(order.lines, start=1):
        if line.quantity <= 0:
            return Decline("invalid_order", f"line {n} ({line.sku}) has quantity {line.quantity}; "
                                            "every line must order at least 1 unit")
    for n, line in enumerate(order.lines, start=1):
        if line.unit_price.amount < 0:
            return Decline("invalid_order", f"line {n} ({line.sku}) has a negative unit price {line.unit_price}")
    for n, line in enumerate(order.lines, start=1):
        if line.unit_price.currency != currency:
            return Decline("currency_mismatch", f"line {n} ({line.sku}) is priced in {line.unit_price.currency} "
                                                f"but the order total is in {currency}")
    if currency not in supported_currencies:
        accepted = ", ".join(sorted(supported_currencies)) or "none"
        return Decline("currency_mismatch", f"orders in {currency} are not accepted (accepted: {accepted})")
    # Not a Money: a sum of upstream lines may be larger than any amount the contract carries.
    lines_sum = _EXACT.create_decimal(0)
    for line in order.lines:
        lines_sum = _EXACT.add(lines_sum, _EXACT.multiply(line.unit_price.amount, line.quantity))
    if order.total.amount != lines_sum:
        return Decline("invalid_order", f"total {order.total} does not match the sum of the lines "
                                        f"{_amount(lines_sum, currency)}")
    if order.total.amount <= 0:
        return Decline("invalid_order", f"total {order.total} must be greater than zero")
    if order.total.amount > LARGEST_AMOUNT:
        return Decline("invalid_order", f"total {order.total} is over the largest amount we accept "
                                        f"({_amount(LARGEST_AMOUNT, currency)})")
    scale = charge_scale(currency)
    if not _fits_scale(order.total.amount, scale):
        return Decline("invalid_order", f"total {order.total} has {_fractions(currency, scale)}; "
                                        "it cannot be charged")
    # The total can be exact while a price is not (2 x 0.125 = 0.25): orders would book the price
    # rounded, and the order would no longer add up to what was charged.
    for n, line in enumerate(order.lines, start=1):
        if not _fits_scale(line.unit_price.amount, scale):
            return Decline("invalid_order", f"line {n} ({line.sku}) is priced at {line.unit_price}, in "
                                            f"{_fractions(currency, scale)}; it cannot be booked")
    return None
