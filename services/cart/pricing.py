"""Pure cart arithmetic: prices come from the catalog only, in exact Decimal, one currency per cart."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from runtime.problems import Conflict
from schemas.types import AMOUNT_INTEGER_DIGITS, Money, OrderLine

CENT = Decimal("0.01")
#: OrderPlaced carries at most 200 lines; a bigger cart could never be checked out.
MAX_LINES = 200


class CartProblem(Conflict):
    """Why a cart change or checkout cannot go ahead, in words fit for the customer: a 409, since
    the request is well formed and what refuses it is the catalog's or the cart's state."""
    slug = "cart-cannot-order"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    unit_price: Decimal
    currency: str
    active: bool


@dataclass(frozen=True)
class PricedLine:
    product: Product
    quantity: int

    @property
    def unit_price(self) -> Money:
        return Money(amount=self.product.unit_price, currency=self.product.currency)

    @property
    def line_total(self) -> Money:
        return Money(amount=(self.product.unit_price * self.quantity).quantize(CENT), currency=self.product.currency)

    def order_line(self) -> OrderLine:
        return OrderLine(sku=self.product.sku, name=self.product.name, quantity=self.quantity,
                         unit_price=self.unit_price)


def whole_cents(amount: Decimal) -> bool:
    """Prices are kept to the cent (numeric(14,2)); a finer price would be silently rounded."""
    return amount.is_finite() and amount == amount.quantize(CENT)


def cart_currency(lines: Iterable[PricedLine]) -> str | None:
    currencies = {line.product.currency for line in lines}
    return currencies.pop() if len(currencies) == 1 else None


def total(lines: list[PricedLine]) -> Money | None:
    """The cart total, or None for an empty cart (it has no currency yet)."""
    if not lines:
        return None
    result = Money.zero(lines[0].product.currency)
    for line in lines:
        result = result + line.line_total  # Money refuses to add two currencies
    return result


#: the largest amount Money carries (its wire pattern's integer digits); payments declines an
#: order above what the books hold, but the cart must still be able to show and send it
MAX_TOTAL = Decimal(10) ** AMOUNT_INTEGER_DIGITS - CENT


def check_can_add(product: Product, others: list[PricedLine], line_count: int,
                  supported_currencies: frozenset[str], quantity: int = 1) -> None:
    """Raise CartProblem if `product` may not be put in a cart holding `others`.

    `line_count` counts the cart's lines other than this product's."""
    if not product.active:
        raise CartProblem(f"product {product.sku} is no longer sold")
    if product.currency not in supported_currencies:
        raise CartProblem(f"product {product.sku} is priced in {product.currency}, which the store does not "
                          f"sell in (accepted: {', '.join(sorted(supported_currencies))})")
    for line in others:
        if line.product.currency != product.currency:
            raise CartProblem(f"product {product.sku} is priced in {product.currency} but this cart is in "
                              f"{line.product.currency}; one cart holds one currency, use a separate cart")
    if line_count >= MAX_LINES:
        raise CartProblem(f"a cart holds at most {MAX_LINES} different products")
    # A fuzzed price times a fuzzed quantity overflowed Money (500 from PUT /carts/{id}/lines/{sku})
    amount = product.unit_price * quantity + sum((line.product.unit_price * line.quantity for line in others), Decimal(0))
    if amount > MAX_TOTAL:
        raise CartProblem(f"the cart's total would be {amount:.2f} {product.currency}, more than one order can "
                          f"hold ({MAX_TOTAL} {product.currency}); order fewer")


def check_orderable(lines: list[PricedLine], supported_currencies: frozenset[str]) -> Money:
    """The total to order, or CartProblem naming what must change first (the catalog may have
    moved on since the products were added)."""
    if not lines:
        raise CartProblem("the cart is empty; add at least one product before checking out")
    for line in lines:
        if not line.product.active:
            raise CartProblem(f"product {line.product.sku} is no longer sold; remove it from the cart")
    currencies = sorted({line.product.currency for line in lines})
    if len(currencies) > 1:
        raise CartProblem(f"the cart mixes currencies ({', '.join(currencies)}) after a catalog change; "
                          "remove the products in the other currency")
    if currencies[0] not in supported_currencies:
        raise CartProblem(f"the store does not sell in {currencies[0]} "
                          f"(accepted: {', '.join(sorted(supported_currencies))})")
    amount = total(lines)
    assert amount is not None
    return amount


def fingerprint(cart_id: str, request: dict[str, Any]) -> str:
    """What makes two checkouts 'the same content': the cart and the parsed request, so key
    order or whitespace in a retried body does not matter."""
    canonical = json.dumps({"cart_id": cart_id, "request": request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
