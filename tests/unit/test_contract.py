"""The event contract: envelope, money, tokens, keys, and the checked-in generated files."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas import REGISTRY, OrderPlaced, deterministic_id, envelope, parse_record, to_record
from schemas.envelope import InvalidRecord
from schemas.types import Money, Payment

ORDER = {
    "order_id": "o-1", "customer_id": "c-1",
    "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 3, "unit_price": {"amount": "0.10", "currency": "EUR"}}],
    "total": {"amount": "0.30", "currency": "EUR"},
    "delivery": {"recipient": "Stores", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
                 "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"},
    "payment": {"mode": "card", "card_token": "tok_visa_approved"},
    "placed_at": "2026-01-05T10:00:00Z",
}


def test_round_trip_keeps_decimal_money_and_uses_the_aggregate_as_key():
    ev = OrderPlaced.model_validate(ORDER)
    key, value, headers = to_record(envelope(ev, source="test"), "00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    assert key == "o-1"
    assert headers["ce_type"] == "OrderPlaced" and headers["traceparent"].startswith("00-")
    assert b'"amount":"0.30"' in value  # a decimal string on the wire, never 0.3 as a float
    ce, back = parse_record(value, REGISTRY)
    assert ce.specversion == "1.0" and ce.subject == "o-1" and ce.dataschema.endswith("OrderPlaced.schema.json")
    assert back.total.amount == Decimal("0.30") and isinstance(back.total.amount, Decimal)
    assert back == ev


def test_float_money_is_refused():
    with pytest.raises(ValidationError, match="never a float"):
        Money(amount=0.3, currency="EUR")


def test_unknown_currency_is_refused():
    with pytest.raises(ValidationError, match="unknown ISO 4217"):
        Money(amount="1.00", currency="XYZ")


@pytest.mark.parametrize("token", ["4111111111111111", "4111 1111 1111 1111", "tok_", "visa"])
def test_card_numbers_never_pass_as_tokens(token):
    with pytest.raises(ValidationError, match="gateway token"):
        Payment(mode="card", card_token=token)


def test_naive_timestamps_are_refused():
    with pytest.raises(ValidationError):
        OrderPlaced.model_validate({**ORDER, "placed_at": "2026-01-05T10:00:00"})


@pytest.mark.parametrize("value,reason", [
    (b"{oops", "not JSON"),
    (b'{"id": "x", "source": "s", "type": "OrderPlaced"}', "not a CloudEvent"),
    (b'{"id":"x","source":"s","specversion":"1.0","type":"Nope","time":"2026-01-01T00:00:00Z","data":{}}', "unknown event type"),
    (b'{"id":"x","source":"s","specversion":"1.0","type":"OrderPlaced","time":"2026-01-01T00:00:00Z","data":{}}', "invalid OrderPlaced"),
])
def test_parse_record_says_what_is_wrong(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_record(value, REGISTRY)


def test_deterministic_ids_are_stable_and_distinct():
    assert deterministic_id("so-1", 3) == deterministic_id("so-1", 3)
    assert deterministic_id("so-1", 3) != deterministic_id("so-1", 4)


def test_checked_in_schemas_and_asyncapi_are_up_to_date():
    from schemas.generate import stale
    assert stale() == [], "run `make schemas` (python -m schemas.generate) and commit the result"


def test_asyncapi_lists_every_topic_with_key_producers_and_consumers():
    import yaml
    from schemas.generate import ASYNCAPI
    doc = yaml.safe_load(ASYNCAPI.read_text())
    assert doc["asyncapi"].startswith("3.")
    assert set(doc["channels"]) == set(REGISTRY)
    for name, channel in doc["channels"].items():
        assert channel["x-key"] and channel["x-producers"], name
    assert "payments" in doc["channels"]["OrderPlaced"]["x-consumers"]
