"""Pure payments domain: order checks, the simulated card gateway, supplier-account credit."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from runtime.errors import TransientError
from schemas.events.orders import OrderPlaced, PaymentDeclined
from schemas.types import SIGNED_AMOUNT_PATTERN, Delivery, Money, OrderLine, Payment
from services.payments.gateway import Authorisation, CardDeclined, CardGateway, GatewayTimeout
from services.payments.ledger import SupplierAccount, decide_account_charge, due_date, ledger_entries
from services.payments.simulated_gateway import SimulatedGateway
from services.payments.validation import CENT, Decline, check_order

EUR = frozenset({"EUR", "USD"})
REASON_CODES = set(PaymentDeclined.model_fields["reason_code"].annotation.__args__)


def eur(s: str, currency: str = "EUR") -> Money:
    return Money(amount=Decimal(s), currency=currency)


def line(qty: int, price: str, currency: str = "EUR", sku: str = "SKU-1") -> OrderLine:
    return OrderLine(sku=sku, name="Widget", quantity=qty, unit_price=eur(price, currency))


def order(lines: list[OrderLine], total: Money) -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1", customer_id="c-1", lines=lines, total=total,
        delivery=Delivery(recipient="Goods in", address_lines=["1 Quay"], city="Split", postal_code="21000",
                          country="HR", phone="+385 1 234", email="goods@example.com"),
        payment=Payment(mode="account"), placed_at=datetime(2025, 1, 2, tzinfo=timezone.utc))


def assert_decline(d: Decline | None, code: str, *fragments: str) -> None:
    assert d is not None and d.reason_code == code, d
    assert code in REASON_CODES
    for f in fragments:
        assert f in d.message, d.message


# --- order validation ---------------------------------------------------------------------------

def test_exact_decimal_total_passes():
    o = order([line(3, "0.10")], eur("0.30"))
    assert check_order(o, EUR) is None
    assert 3 * Decimal("0.10") == Decimal("0.30") and 3 * 0.10 != 0.30  # why floats are banned


def test_several_lines_sum_exactly():
    o = order([line(3, "0.10"), line(7, "19.99", sku="SKU-2")], eur("140.23"))
    assert check_order(o, EUR) is None


def test_total_mismatch_declined_with_both_amounts():
    o = order([line(9, "10.00")], eur("100.00"))
    assert_decline(check_order(o, EUR), "invalid_order", "total 100.00 EUR", "sum of the lines 90.00 EUR")


def test_off_by_one_cent_declined():
    assert_decline(check_order(order([line(3, "0.10")], eur("0.31")), EUR), "invalid_order")


@pytest.mark.parametrize("qty", [0, -1])
def test_non_positive_quantity_declined(qty):
    o = order([line(1, "5.00"), line(qty, "5.00", sku="SKU-2")], eur("5.00"))
    assert_decline(check_order(o, EUR), "invalid_order", "line 2", "SKU-2", str(qty))


def test_line_currency_differs_from_total():
    o = order([line(1, "5.00"), line(1, "5.00", currency="USD", sku="SKU-2")], eur("10.00"))
    assert_decline(check_order(o, EUR), "currency_mismatch", "USD", "EUR")


def test_unsupported_currency_declined():
    o = order([line(2, "5.00", "GBP")], eur("10.00", "GBP"))
    assert_decline(check_order(o, EUR), "currency_mismatch", "GBP")


def test_zero_total_declined():
    o = order([line(1, "0.00")], eur("0.00"))
    assert_decline(check_order(o, EUR), "invalid_order", "greater than zero")


def test_negative_total_declined():
    o = order([line(1, "-5.00")], eur("-5.00"))
    assert_decline(check_order(o, EUR), "invalid_order")


# --- simulated card gateway ---------------------------------------------------------------------

@pytest.fixture
def gw(tmp_path) -> SimulatedGateway:
    return SimulatedGateway(tmp_path / "gateway.sqlite")


def test_implements_the_port(gw):
    port: CardGateway = gw  # static check; and at runtime it has the method
    assert callable(port.authorise)


def test_approved_and_idempotent(gw):
    a = gw.authorise("tok_visa_approved", eur("12.50"), "k1")
    assert isinstance(a, Authorisation) and a.amount == eur("12.50")
    assert gw.authorise("tok_visa_approved", eur("12.50"), "k1") == a
    assert gw.charges_for("k1") == 1 and gw.total_charged() == Decimal("12.50")


def test_any_other_well_formed_token_approved(gw):
    gw.authorise("tok_mastercard_xyz", eur("1.00"), "k1")
    assert gw.charges_for("k1") == 1


def test_malformed_token_is_a_programming_error(gw):
    with pytest.raises(ValueError):
        gw.authorise("4111111111111111", eur("1.00"), "k1")


@pytest.mark.parametrize("token,code", [("tok_insufficient_funds", "insufficient_funds"),
                                        ("tok_fraud_suspected", "suspected_fraud")])
def test_card_declines(gw, token, code):
    with pytest.raises(CardDeclined) as e:
        gw.authorise(token, eur("10.00"), "k1")
    assert e.value.reason_code == code and code in REASON_CODES and e.value.message
    assert gw.charges_for("k1") == 0 and gw.total_charged() == 0


def test_timeout_once_charges_exactly_once_across_retry_and_restart(tmp_path):
    path = tmp_path / "gateway.sqlite"
    gw = SimulatedGateway(path)
    with pytest.raises(GatewayTimeout) as e:
        gw.authorise("tok_timeout_once", eur("99.99"), "order-7")
    assert isinstance(e.value, TransientError)
    assert gw.charges_for("order-7") == 1  # the charge happened; only the answer was lost
    first = gw.authorise("tok_timeout_once", eur("99.99"), "order-7")
    assert gw.charges_for("order-7") == 1

    restarted = SimulatedGateway(path)  # our service restarts; the gateway remembers
    assert restarted.authorise("tok_timeout_once", eur("99.99"), "order-7") == first
    assert restarted.charges_for("order-7") == 1
    assert restarted.total_charged() == Decimal("99.99")


def test_timeout_once_per_key(gw):
    for key in ("a", "b"):
        with pytest.raises(GatewayTimeout):
            gw.authorise("tok_timeout_once", eur("1.00"), key)
    assert gw.total_charged() == Decimal("2.00")


def test_same_key_different_amount_is_a_programming_error(gw):
    gw.authorise("tok_visa_approved", eur("10.00"), "k1")
    with pytest.raises(ValueError, match="k1"):
        gw.authorise("tok_visa_approved", eur("10.01"), "k1")
    with pytest.raises(ValueError):
        gw.authorise("tok_visa_approved", eur("10.00", "USD"), "k1")
    assert gw.charges_for("k1") == 1


def test_concurrent_gateways_on_one_file_charge_once(tmp_path):
    path = tmp_path / "gateway.sqlite"
    SimulatedGateway(path)

    def attempt(_):
        return SimulatedGateway(path).authorise("tok_visa_approved", eur("5.00"), "shared")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(16)))
    assert len({r.authorisation_id for r in results}) == 1
    assert SimulatedGateway(path).charges_for("shared") == 1


# --- supplier accounts --------------------------------------------------------------------------

def account(limit="1000.00", balance="900.00", currency="EUR", status="active") -> SupplierAccount:
    return SupplierAccount("c-1", Decimal(limit), Decimal(balance), currency, 30, status)


def test_amount_equal_to_available_credit_allowed():
    assert account().available_credit == Decimal("100.00")
    assert decide_account_charge(account(), eur("100.00")) is None


def test_one_cent_over_available_credit_declined():
    assert_decline(decide_account_charge(account(), eur("100.01")), "credit_limit_exceeded",
                   "100.01 EUR", "available credit 100.00 EUR", "credit limit 1000.00 EUR", "open balance 900.00 EUR")


def test_no_account():
    assert_decline(decide_account_charge(None, eur("1.00")), "no_account")


def test_suspended_account():
    assert_decline(decide_account_charge(account(status="suspended"), eur("1.00")), "account_suspended")


def test_account_currency_mismatch():
    assert_decline(decide_account_charge(account(), eur("1.00", "USD")), "currency_mismatch", "USD", "EUR")


def test_account_rejects_float():
    with pytest.raises(TypeError):
        SupplierAccount("c-1", 1000.0, Decimal("0"), "EUR", 30, "active")  # type: ignore[arg-type]


def test_ledger_entries_balance():
    entries = ledger_entries("c-1", eur("123.45"), "order-1")
    assert {(e.account, e.side) for e in entries} == {("receivable:c-1", "debit"), ("revenue", "credit")}
    assert all(e.amount == eur("123.45") and e.reference == "order-1" for e in entries)
    assert sum(e.signed_amount for e in entries) == 0


def test_ledger_rejects_non_positive_amount():
    with pytest.raises(ValueError):
        ledger_entries("c-1", eur("0.00"), "order-1")


def test_due_date():
    assert due_date(date(2025, 1, 31), 30) == date(2025, 3, 2)
    assert due_date(date(2025, 1, 31), 0) == date(2025, 1, 31)
    with pytest.raises(ValueError):
        due_date(date(2025, 1, 31), -1)


def test_fraction_of_a_cent_total_declined():
    # lines priced in tenths of a cent add up to a total no card or ledger can hold exactly
    o = order([line(3, "0.125")], eur("0.375"))
    assert_decline(check_order(o, EUR), "invalid_order", "0.375 EUR", "fractions of a cent")


def test_total_over_what_the_books_hold_declined():
    o = order([line(1, "1000000000000.00")], eur("1000000000000.00"))
    assert_decline(check_order(o, EUR), "invalid_order", "largest amount")


# --- gateway choice -------------------------------------------------------------------------------

def test_simulated_gateway_is_chosen_by_default_with_state_under_the_data_dir(tmp_path, monkeypatch):
    from runtime.config import Settings
    from services.payments.gateway import gateway_from_config
    monkeypatch.delenv("SALESBUS_CARD_GATEWAY", raising=False)
    monkeypatch.delenv("SALESBUS_CARD_GATEWAY_STATE", raising=False)
    gw = gateway_from_config(Settings(data_dir=tmp_path))
    assert isinstance(gw, SimulatedGateway)
    gw.authorise("tok_visa_approved", eur("1.00"), "k1")
    assert SimulatedGateway(tmp_path / "card-gateway.sqlite").charges_for("k1") == 1


def test_gateway_state_path_from_env(tmp_path, monkeypatch):
    from runtime.config import Settings
    from services.payments.gateway import gateway_from_config
    monkeypatch.setenv("SALESBUS_CARD_GATEWAY_STATE", str(tmp_path / "elsewhere" / "gw.sqlite"))
    gateway_from_config(Settings(data_dir=tmp_path)).authorise("tok_visa_approved", eur("1.00"), "k1")
    assert SimulatedGateway(tmp_path / "elsewhere" / "gw.sqlite").charges_for("k1") == 1


@pytest.mark.parametrize("name", ["nosuch", "../evil", "Simulated"])
def test_unknown_gateway_adapter_is_refused(tmp_path, name):
    from runtime.config import Settings
    from services.payments.gateway import gateway_from_config
    with pytest.raises(ValueError, match="gateway"):
        gateway_from_config(Settings(data_dir=tmp_path), name)


# --- what payments accepts is what the books hold (issue 9) ---------------------------------------

def test_negative_unit_price_declined_even_when_the_total_adds_up():
    o = order([line(1, "10.00"), line(1, "-5.00", sku="SKU-2")], eur("5.00"))
    assert_decline(check_order(o, EUR), "invalid_order", "line 2", "SKU-2", "negative unit price -5.00 EUR")


def test_exact_total_of_sub_cent_prices_declined():
    # 2 x 0.125 = 0.25 is a chargeable total, but orders would book the price as 0.13
    o = order([line(2, "0.125")], eur("0.25"))
    assert_decline(check_order(o, EUR), "invalid_order", "line 1", "0.125 EUR", "fractions of a cent")


@pytest.mark.parametrize("price,total,declined", [("150", "300", False), ("150.00", "300.00", False),
                                                  ("150.50", "301.00", True)])
def test_yen_have_no_decimals(price, total, declined):
    o = order([line(2, price, "JPY")], eur(total, "JPY"))
    d = check_order(o, frozenset({"JPY"}))
    if declined:
        assert_decline(d, "invalid_order", "smallest JPY amount", "0 decimal places")
    else:
        assert d is None


def test_three_decimal_currencies_are_charged_to_what_the_books_keep():
    # KWD has 3 decimal places; numeric(14,2) would silently round the third
    assert check_order(order([line(1, "1.23", "KWD")], eur("1.23", "KWD")), frozenset({"KWD"})) is None
    assert_decline(check_order(order([line(1, "1.234", "KWD")], eur("1.234", "KWD")), frozenset({"KWD"})),
                   "invalid_order", "2 decimal places")


def test_the_largest_sum_the_contract_allows_is_declined_not_an_exception():
    # 200 lines x 10^6 units x the largest price: no Money can carry the sum, the message still says it
    big = [line(1_000_000, "99999999999999.9999", sku=f"SKU-{n}") for n in range(200)]
    assert_decline(check_order(order(big, eur("1.00")), EUR), "invalid_order",
                   "sum of the lines 19999999999999999980000.0000 EUR")


def _orders_column(column: str) -> tuple[int, int]:
    from pathlib import Path
    sql = "\n".join(p.read_text() for p in sorted(Path(__file__).resolve().parents[2]
                                                   .glob("services/orders/migrations/*.sql")))
    found = re.findall(rf"^\s*{column}\s+numeric\((\d+),\s*(\d+)\)", sql, re.M)
    assert found, f"orders has no numeric column {column}"
    assert len(set(found)) == 1, found
    return int(found[0][0]), int(found[0][1])


def _column_max(precision: int, scale: int) -> Decimal:
    return Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale)


def test_the_largest_accepted_total_fits_the_orders_columns():
    from services.payments.validation import LARGEST_AMOUNT
    for column in ("total_amount", "unit_price"):
        precision, scale = _orders_column(column)
        assert LARGEST_AMOUNT <= _column_max(precision, scale), column
        assert LARGEST_AMOUNT == LARGEST_AMOUNT.quantize(Decimal(1).scaleb(-scale)), column
    assert check_order(order([line(1, format(LARGEST_AMOUNT, "f"))], eur(format(LARGEST_AMOUNT, "f"))), EUR) is None
    over = LARGEST_AMOUNT + CENT
    assert_decline(check_order(order([line(1, format(over, "f"))], eur(format(over, "f"))), EUR),
                   "invalid_order", "largest amount")


def prices(places: int):
    return st.decimals(min_value=Decimal("-2"), max_value=Decimal("99999999999999.9999"), places=places,
                       allow_nan=False, allow_infinity=False) | st.sampled_from(
        [Decimal("999999999999.99"), Decimal("0.01"), Decimal("1000000000000.00"), Decimal("0.125")])


@st.composite
def orders(draw):
    """Mostly orders that could pass (whole cents, positive quantities, exact totals), near the limits."""
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    places = draw(st.sampled_from([0, 2, 2, 2, 3, 4]))
    quantities = st.integers(1, 1_000_000) | st.sampled_from([1, 2]) | st.integers(-2, 0)
    lines = [line(draw(quantities), format(draw(prices(places)), "f"), currency, sku=f"SKU-{n}")
             for n in range(draw(st.integers(1, 4)))]
    exact = sum((ln.unit_price.amount * ln.quantity for ln in lines), Decimal(0))
    total = exact if draw(st.integers(0, 9)) else draw(prices(places))
    if not re.fullmatch(SIGNED_AMOUNT_PATTERN, format(total, "f")):
        total = Decimal("1.00")
    return order(lines, eur(format(total, "f"), currency))


@settings(max_examples=300, deadline=None, database=None)
@given(orders())
def test_whatever_payments_would_charge_the_orders_service_can_record(o):
    """No order makes payments charge while orders then fails on a column overflow (or rounds)."""
    if check_order(o, frozenset({"EUR", "JPY", "KWD"})) is not None:
        return
    precision, scale = _orders_column("total_amount")
    column_max = _column_max(precision, scale)
    amounts = [o.total.amount] + [ln.unit_price.amount for ln in o.lines]
    assert all(0 <= a <= column_max and a == a.quantize(Decimal(1).scaleb(-scale)) for a in amounts), o
    assert all(1 <= ln.quantity <= 2 ** 31 - 1 for ln in o.lines)
    assert 0 < o.total.amount
