"""Cart arithmetic and checkout input rules (pure: no database, no broker)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.cart.models import CheckoutIn
from services.cart.pricing import (MAX_LINES, CartProblem, PricedLine, Product, check_can_add, check_orderable,
                                   fingerprint, total, whole_cents)

EUR_ONLY = frozenset({"EUR"})
SUPPORTED = frozenset({"EUR", "USD"})


def product(sku="BULB-LED-9W", price="0.10", currency="EUR", active=True) -> Product:
    return Product(sku=sku, name=sku.title(), unit_price=Decimal(price), currency=currency, active=active)


def test_totals_are_exact_decimals():
    lines = [PricedLine(product(price="0.10"), 3), PricedLine(product("TUBE-T8", "1.85"), 7)]
    assert lines[0].line_total.amount == Decimal("0.30")
    assert total(lines).amount == Decimal("13.25")
    assert str(total(lines)) == "13.25 EUR"
    assert total([]) is None


def test_product_in_another_currency_is_refused_with_a_reason():
    with pytest.raises(CartProblem, match="priced in USD but this cart is in EUR"):
        check_can_add(product("CABLE-1", currency="USD"), [PricedLine(product(), 1)], 1, SUPPORTED)


@pytest.mark.parametrize("candidate, count, reason", [
    (product(active=False), 0, "no longer sold"),
    (product(currency="JPY"), 0, "does not sell in"),
    (product(), MAX_LINES, "at most 200"),
])
def test_products_that_cannot_go_in_a_cart(candidate, count, reason):
    with pytest.raises(CartProblem, match=reason):
        check_can_add(candidate, [], count, SUPPORTED)


def test_checkout_rechecks_the_catalog_as_it_is_now():
    with pytest.raises(CartProblem, match="empty"):
        check_orderable([], EUR_ONLY)
    with pytest.raises(CartProblem, match="BULB-LED-9W is no longer sold"):
        check_orderable([PricedLine(product(active=False), 1)], EUR_ONLY)
    with pytest.raises(CartProblem, match="mixes currencies"):
        check_orderable([PricedLine(product(), 1), PricedLine(product("X-1", currency="USD"), 1)], SUPPORTED)
    with pytest.raises(CartProblem, match="does not sell in USD"):
        check_orderable([PricedLine(product(currency="USD"), 1)], EUR_ONLY)
    assert check_orderable([PricedLine(product(), 3)], EUR_ONLY).amount == Decimal("0.30")


def test_prices_finer_than_a_cent_are_not_whole_cents():
    assert whole_cents(Decimal("1.85")) and whole_cents(Decimal("2")) and whole_cents(Decimal("1.850"))
    assert not whole_cents(Decimal("1.855"))
    assert not whole_cents(Decimal("NaN"))


def test_fingerprint_ignores_key_order_but_not_content_or_cart():
    a = fingerprint("cart-1", {"language": "en", "payment": {"mode": "account"}})
    assert a == fingerprint("cart-1", {"payment": {"mode": "account"}, "language": "en"})
    assert a != fingerprint("cart-1", {"language": "fr", "payment": {"mode": "account"}})
    assert a != fingerprint("cart-2", {"language": "en", "payment": {"mode": "account"}})


DELIVERY = {"recipient": "Stores", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
            "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"}


def test_card_number_is_refused_without_being_repeated():
    with pytest.raises(ValidationError) as err:
        CheckoutIn.model_validate({"delivery": DELIVERY, "payment": {"mode": "card",
                                                                    "card_token": "4111111111111111"}})
    messages = " ".join(e["msg"] for e in err.value.errors())
    assert "gateway token" in messages and "4111111111111111" not in messages


@pytest.mark.parametrize("terms, reason", [
    ({"interval": {"every": 2, "unit": "months"}, "start_date": "2026-03-01", "time_zone": "Mars/Olympus"},
     "IANA time zone"),
    ({"interval": {"every": 0, "unit": "weeks"}, "start_date": "2026-03-01", "time_zone": "UTC"},
     "greater than or equal to 1"),
    ({"interval": {"every": 1, "unit": "years"}, "start_date": "2026-03-01", "time_zone": "UTC"},
     "'days', 'weeks' or 'months'"),
    ({"every": 1, "unit": "weeks", "start_date": "2026-03-01", "time_zone": "UTC"}, "interval"),  # the old shape
])
def test_bad_standing_order_terms_are_refused(terms, reason):
    with pytest.raises(ValidationError, match=reason):
        CheckoutIn.model_validate({"delivery": DELIVERY, "payment": {"mode": "account"}, "standing_order": terms})


def test_a_line_that_would_overflow_the_cart_total_is_refused():
    """Regression (CI's full OpenAPI fuzz): a price of 323 700 000 000 000.00 times 623 778 units
    reached Money's 14-digit bound while building the cart view and answered 500."""
    huge = product("HUGE-1", price="323700000000000.00")
    with pytest.raises(CartProblem, match="more than one order can hold"):
        check_can_add(huge, [], 0, SUPPORTED, quantity=623778)
    cheap = product("CHEAP-1", price="1.00")
    check_can_add(cheap, [PricedLine(product(price="99999999999998.00"), 1)], 1, SUPPORTED, quantity=1)
    with pytest.raises(CartProblem):
        check_can_add(cheap, [PricedLine(product(price="99999999999998.00"), 1)], 1, SUPPORTED, quantity=2)
