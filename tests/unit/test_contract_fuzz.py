"""The published contract is exactly what consumers accept (issue 9, item 8).

Forward: instances generated from each published JSON Schema (schemas/json/*.schema.json, via
hypothesis-jsonschema, which honours patterns, bounds, enums and the formats used) are accepted
by the consumer's own decoding: runtime.record.decode -> schemas.envelope.parse_record -> the
model. Backward: a corpus of shapes upstream systems have sent or could send is refused by the
model with a ValidationError (never another exception), by parse_record as an InvalidRecord, and
by the published schema itself (jsonschema-rs, an ECMA-262 regex engine, not Python's re).

The schemas are JSON Schema 2020-12 (pydantic's draft). hypothesis-jsonschema documents drafts
4-7; test_the_schemas_use_only_keywords_drafts_7_and_2020_12_share keeps the published schemas
to what both drafts mean the same way ($defs is found by JSON pointer, as definitions would be).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
from pydantic import ValidationError

from runtime.record import Record, decode
from schemas import REGISTRY
from schemas.envelope import InvalidRecord, parse_record

JSON_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"
#: per event; about 12 s for the file on this project's 2 cores. A deeper run:
#: SALESBUS_FUZZ_EXAMPLES=500 pytest tests/unit/test_contract_fuzz.py
EXAMPLES = int(os.environ.get("SALESBUS_FUZZ_EXAMPLES", "15"))


def published(event_type: str) -> dict:
    return json.loads((JSON_DIR / f"{event_type}.schema.json").read_text())


_EMAIL = jsonschema_rs.validator_for({"format": "email"}, validate_formats=True)


def _email_format(value: str) -> bool:
    # jsonschema-rs refuses an upper-case punycode label (x@y.XN--6FRZ82G) that hypothesis draws
    # from the TLD list; domain names are case-insensitive, so it is asked about the lower case
    local, at, domain = value.rpartition("@")
    return _EMAIL.is_valid(f"{local}{at}{domain.lower()}")


def ecma_validator(event_type: str):
    """The published schema as an independent implementation reads it (Rust, ECMA-262 regexes)."""
    return jsonschema_rs.validator_for(published(event_type), validate_formats=True,
                                       formats={"email": _email_format})


@pytest.fixture(scope="module", autouse=True)
def strategies_built_once():
    """hypothesis-jsonschema builds the strategy of every object property again on every draw
    (canonicalising each enum member against its schema, compiling each pattern): about a second
    per OrderConfirmed. A strategy depends only on its schema, so it is built once per schema."""
    import hypothesis_jsonschema._from_schema as hjs
    original = getattr(hjs, "__from_schema")
    cache: dict = {}

    def once(schema, *, alphabet, custom_formats):
        key = (json.dumps(schema, sort_keys=True), id(alphabet), id(custom_formats))
        if key not in cache:
            cache[key] = original(schema, alphabet=alphabet, custom_formats=custom_formats)
        return cache[key]

    setattr(hjs, "__from_schema", once)
    yield
    setattr(hjs, "__from_schema", original)


def cloudevent(event_type: str, data, event_id: str = "ev-1") -> bytes:
    return json.dumps({"specversion": "1.0", "id": event_id, "source": "contract-fuzz", "type": event_type,
                       "time": "2026-01-05T10:00:00Z", "data": data}).encode()


# --- forward: what the schema allows, the consumer accepts -----------------------------------------

@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_every_instance_of_the_published_schema_is_accepted_by_the_consumer(event_type):
    schema = published(event_type)
    model = REGISTRY[event_type]
    ecma = ecma_validator(event_type)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(from_schema(schema))
    def accepted(instance):
        assert ecma.is_valid(instance), "the generator and an independent validator disagree on the schema"
        value = cloudevent(event_type, instance)
        ce, event = parse_record(value, REGISTRY)
        assert isinstance(event, model)
        decoded = decode(Record(event_type, 0, 0, b"k", value))
        assert decoded.error is None, decoded.error
        # and what the consumer makes of it travels as the same contract
        assert ecma.is_valid(json.loads(event.model_dump_json())), "the model serialises outside its schema"

    accepted()


# --- backward: what the consumer refuses, the schema refuses too --------------------------------------

ORDER = {
    "order_id": "o-1", "customer_id": "c-1",
    "lines": [{"sku": "BULB-LED-9W", "name": "LED bulb", "quantity": 3,
               "unit_price": {"amount": "0.10", "currency": "EUR"}}],
    "total": {"amount": "0.30", "currency": "EUR"},
    "delivery": {"recipient": "Stores", "address_lines": ["1 Quay"], "city": "Split", "postal_code": "21000",
                 "country": "HR", "phone": "+385 21 000", "email": "buyer@example.hr"},
    "payment": {"mode": "card", "card_token": "tok_visa_approved"},
    "placed_at": "2026-01-05T10:00:00Z",
}
STANDING = {
    "standing_order_id": "so-1", "customer_id": "c-1", "lines": [{"sku": "BULB-LED-9W", "quantity": 10}],
    "delivery": ORDER["delivery"], "payment": {"mode": "account"}, "interval": {"every": 2, "unit": "weeks"},
    "start_date": "2026-02-01", "time_zone": "Europe/Zagreb", "requested_at": "2026-01-05T10:00:00Z",
}
TIMER = {"timer_id": "t-1", "owner": "crm", "kind": "reminder", "fire_at": "2026-01-05T10:00:00Z",
         "payload": {"task_id": "task-1", "reminder_id": "r-1"}}
PRODUCT = {"sku": "BULB-LED-9W", "name": "LED bulb", "unit_price": {"amount": "1.85", "currency": "EUR"},
           "active": True, "changed_at": "2026-01-05T10:00:00Z"}
ACCOUNT = {"customer_id": "c-1", "credit_limit": "5000.00", "open_balance": "0.00", "currency": "EUR",
           "payment_terms_days": 30, "status": "active", "changed_at": "2026-01-05T10:00:00Z"}
GOOD = {"OrderPlaced": ORDER, "StandingOrderRequested": STANDING, "TimerRequested": TIMER,
        "ProductChanged": PRODUCT, "SupplierAccountChanged": ACCOUNT}


def nested(depth: int) -> dict:
    """{"a": {"a": ... }} `depth` levels deep, built without recursion."""
    node: dict = {}
    for _ in range(depth):
        node = {"a": node}
    return node


def amount(value) -> tuple[str, tuple, object]:
    return ("OrderPlaced", ("total", "amount"), value)


#: (event type, path to the field, value) -> each makes a valid event invalid
REJECTED = {
    "NUL in an id": ("OrderPlaced", ("order_id",), "o-\x00-1"),
    "201-character id": ("OrderPlaced", ("order_id",), "o" * 201),
    "empty id": ("OrderPlaced", ("customer_id",), ""),
    "integer id": ("OrderPlaced", ("order_id",), 12345),
    "object id": ("OrderPlaced", ("customer_id",), {"nested": 1}),
    "newline in an id": ("OrderPlaced", ("order_id",), "o-1\n"),
    "C1 control in an id": ("OrderPlaced", ("order_id",), "o-\x851"),
    "lone surrogate in an id": ("OrderPlaced", ("order_id",), "o-\ud800"),
    "NUL in free text": ("OrderPlaced", ("lines", 0, "name"), "LED\x00bulb"),
    "free text too long": ("OrderPlaced", ("lines", 0, "name"), "x" * 201),
    "5000-digit integer": ("OrderPlaced", ("lines", 0, "quantity"), 10 ** 5000),
    "5000-digit amount": amount("9" * 5000),
    "1E+5000 amount": amount("1E+5000"),
    "1e2 amount": amount("1e2"),
    "NaN amount": amount("NaN"),
    "Infinity amount": amount("Infinity"),
    "float amount": amount(0.3),
    "integer amount": amount(1),
    "amount with spaces": amount(" 0.30"),
    "amount with a trailing newline": amount("0.30\n"),
    "amount in Arabic-Indic digits": amount("\u0660.\u0663\u0660"),
    "amount with a comma": amount("0,30"),
    "15 integer digits": amount("100000000000000.00"),
    "5 decimals": amount("0.30000"),
    "unknown currency": ("OrderPlaced", ("total", "currency"), "XYZ"),
    "lower-case currency": ("OrderPlaced", ("total", "currency"), "eur"),
    "quantity beyond a million": ("OrderPlaced", ("lines", 0, "quantity"), 1_000_001),
    "quantity below minus a million": ("OrderPlaced", ("lines", 0, "quantity"), -1_000_001),
    "quantity as a string": ("OrderPlaced", ("lines", 0, "quantity"), "3"),
    "quantity with a fraction": ("OrderPlaced", ("lines", 0, "quantity"), 3.5),
    "quantity as a boolean": ("OrderPlaced", ("lines", 0, "quantity"), True),
    "negative standing quantity": ("StandingOrderRequested", ("lines", 0, "quantity"), -1),
    "zero standing quantity": ("StandingOrderRequested", ("lines", 0, "quantity"), 0),
    "occurrence over int": ("OrderPlaced", ("occurrence",), 2 ** 31),
    "occurrence zero": ("OrderPlaced", ("occurrence",), 0),
    "unknown field": ("OrderPlaced", ("discount",), "10%"),
    "unknown nested field": ("OrderPlaced", ("delivery", "floor"), 3),
    "depth bomb in an unknown field": ("OrderPlaced", ("extra",), nested(100_000)),
    "depth bomb as a line": ("OrderPlaced", ("lines", 0), nested(100_000)),
    "depth bomb in a timer payload": ("TimerRequested", ("payload", "task_id"), nested(100_000)),
    "500 levels in a timer payload": ("TimerRequested", ("payload", "task_id"), nested(500)),
    "list in a timer payload": ("TimerRequested", ("payload", "task_id"), ["a"]),
    "33 keys in a timer payload": ("TimerRequested", ("payload",), {f"k{i}": i for i in range(33)}),
    "201 lines": ("OrderPlaced", ("lines",), ORDER["lines"] * 201),
    "no lines": ("OrderPlaced", ("lines",), []),
    "5 address lines": ("OrderPlaced", ("delivery", "address_lines"), ["x"] * 5),
    "email read as a group": ("OrderPlaced", ("delivery", "email"), "x:y@example.com"),
    "email with a quoted local part": ("OrderPlaced", ("delivery", "email"), '"a;b"@example.com'),
    "two addresses": ("OrderPlaced", ("delivery", "email"), "a@example.com,b@example.com"),
    "internationalised mailbox": ("OrderPlaced", ("delivery", "email"), "ünï@exämple.com"),
    "card number as a token": ("OrderPlaced", ("payment", "card_token"), "4111111111111111"),
    "token with a trailing newline": ("OrderPlaced", ("payment", "card_token"), "tok_visa_approved\n"),
    "card without a token": ("OrderPlaced", ("payment",), {"mode": "card"}),
    "account with a token": ("OrderPlaced", ("payment",), {"mode": "account", "card_token": "tok_visa_approved"}),
    "timestamp without offset": ("OrderPlaced", ("placed_at",), "2026-01-05T10:00:00"),
    "timestamp as a number": ("OrderPlaced", ("placed_at",), 1767607200),
    "timestamp before year 1 in UTC": ("OrderPlaced", ("placed_at",), "0001-01-01T00:30:00+01:00"),
    "timestamp after year 9999 in UTC": ("OrderPlaced", ("placed_at",), "9999-12-31T23:30:00-01:00"),
    "date as a number": ("StandingOrderRequested", ("start_date",), 20260201),
    "time zone with ..": ("StandingOrderRequested", ("time_zone",), "../../etc/passwd"),
    "negative catalog price": ("ProductChanged", ("unit_price", "amount"), "-1.00"),
    "catalog price in tenths of a cent": ("ProductChanged", ("unit_price", "amount"), "1.005"),
    "catalog price over the books": ("ProductChanged", ("unit_price", "amount"), "1000000000000.00"),
    "yen with decimals": ("ProductChanged", ("unit_price",), {"amount": "150.50", "currency": "JPY"}),
    "negative credit limit": ("SupplierAccountChanged", ("credit_limit",), "-1.00"),
    "active as a string": ("ProductChanged", ("active",), "true"),
    "terms as a string": ("SupplierAccountChanged", ("payment_terms_days",), "30"),
}


def mutated(event_type: str, path: tuple, value) -> dict:
    data = copy.deepcopy(GOOD[event_type])
    node = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return data


def test_the_good_examples_are_good():
    for event_type, data in GOOD.items():
        REGISTRY[event_type].model_validate(data)
        assert ecma_validator(event_type).is_valid(data), event_type


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_shapes_are_a_validation_error_and_outside_the_published_schema(case):
    event_type, path, value = REJECTED[case]
    data = mutated(event_type, path, value)
    with pytest.raises(ValidationError):
        REGISTRY[event_type].model_validate(data)
    try:
        text = json.dumps(data)
    except (ValueError, RecursionError):
        return  # no JSON document can carry it (a lone surrogate, 100 000 levels): nothing to publish
    with pytest.raises(InvalidRecord):
        parse_record(cloudevent(event_type, data), REGISTRY)
    loaded = json.loads(text)
    try:
        allowed = ecma_validator(event_type).is_valid(loaded)
    except UnicodeEncodeError:
        allowed = False  # a lone surrogate is no Unicode text: no JSON Schema validator takes it
    assert not allowed, f"the published {event_type} schema allows what the consumer refuses"


def test_a_negative_order_quantity_is_a_business_decline_not_a_dead_letter():
    # the contract lets it through on purpose: payments tells the customer (PaymentDeclined)
    from schemas import OrderPlaced
    from services.payments.validation import check_order
    order = OrderPlaced.model_validate(mutated("OrderPlaced", ("lines", 0, "quantity"), -3))
    decline = check_order(order, frozenset({"EUR"}))
    assert decline is not None and decline.reason_code == "invalid_order" and "quantity -3" in decline.message


# --- the drafts ------------------------------------------------------------------------------------

#: keywords that mean the same in draft 7 (what hypothesis-jsonschema implements) and 2020-12
#: (what the schemas declare); annotations included. (exclusiveMinimum is a number since draft 6.)
SHARED_KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "type", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "enum", "const", "anyOf",
    "minimum", "maximum", "exclusiveMinimum", "maxProperties", "propertyNames", "title", "description", "default",
}


def keywords(schema, found: set) -> set:
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    keywords(sub, found)
            elif key in ("enum", "const", "default", "required", "examples"):
                continue
            else:
                keywords(value, found)
    elif isinstance(schema, list):
        for item in schema:
            keywords(item, found)
    return found


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_the_schemas_use_only_keywords_drafts_7_and_2020_12_share(event_type):
    schema = published(event_type)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert keywords(schema, set()) - SHARED_KEYWORDS == set()
