"""Value types shared by the event contracts: ids, text, money, order lines, delivery details.

Every field an upstream system can fill has an explicit bound, and the bound is written so the
published JSON Schema says exactly what the models accept: a record that satisfies the schema is
accepted, a record that does not is refused with a ValidationError (dead-lettered with the reason),
never an exception further down (a PostgreSQL column overflow, a NUL in a text column, a
5000-digit number, an email header that turns into a group). The models are more lenient than the
schema in two places only, both normalising: an email given as "Name <a@b.example>" or with
surrounding spaces (EmailStr keeps the address), and a date-time with a space for the "T"
(pydantic's parser). tests/unit/test_contract_fuzz.py checks both directions. Patterns are written once, as
regular expressions that mean the same in ECMA-262 (JSON Schema), Rust's regex (pydantic-core)
and Python's re: anchored with ^...$, ASCII ranges in brackets, no lookarounds where pydantic
runs them.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import email_validator
from babel.numbers import get_currency_precision, list_currencies
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StringConstraints,
                      WithJsonSchema, field_validator, model_validator, validate_email)

# --- ids and text -------------------------------------------------------------------------------

#: longest id: the inbox, payment and order keys are btree-indexed text (a row must stay well under
#: ~2.7 kB); UUIDs are 36, upstream ids < 100
MAX_ID = 200
#: no C0 or C1 control character (a NUL is refused by PostgreSQL text columns, CR/LF would split an
#: email header, the others are never part of a legitimate id or one-line label)
_NO_CONTROLS = r"[^\x00-\x1f\x7f-\x9f]"
ID_PATTERN = rf"^{_NO_CONTROLS}+$"
LINE_PATTERN = rf"^{_NO_CONTROLS}*$"
#: multi-line text (notes, messages, reasons): anything but NUL
TEXT_PATTERN = r"^[^\x00]*$"

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]
#: the same bounds as Field keywords, for optional fields: `str | None = Field(None, **ID_BOUNDS)` keeps
#: the annotation a plain `str | None`, which the exporter (runtime.export) maps to a text column
ID_BOUNDS: dict[str, Any] = {"min_length": 1, "max_length": MAX_ID, "pattern": ID_PATTERN}


def line(max_length: int, min_length: int = 0) -> Any:
    """One line of free text (a name, a title, a subject): no control characters, bounded."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=LINE_PATTERN)]


def text(max_length: int, min_length: int = 0) -> Any:
    """Free text that may span lines (a note, a message): no NUL, bounded."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)]


def line_bounds(max_length: int) -> dict[str, Any]:
    return {"max_length": max_length, "pattern": LINE_PATTERN}


def text_bounds(max_length: int) -> dict[str, Any]:
    return {"max_length": max_length, "pattern": TEXT_PATTERN}


#: a name as people type it (product, customer, contact): the APIs that take them refuse no control
#: characters, and the email templates flatten what they show, so only NUL is out
Name = text(200)
#: an IANA time-zone key as ZoneInfo accepts one (no "..", no absolute path); whether the zone
#: exists is the consumer's question (the zone database changes more often than the contract)
TimeZoneName = Annotated[str, StringConstraints(
    min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")]


def _known_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown IANA time zone {v!r} (e.g. Europe/Zagreb)") from None
    return v


#: the zones this installation's zone database knows, for HTTP request bodies: listed in the
#: OpenAPI document, so a client can tell a valid one from the schema alone
KNOWN_ZONES = sorted(available_timezones())
KnownTimeZone = Annotated[TimeZoneName, AfterValidator(_known_zone),
                          WithJsonSchema({"type": "string", "enum": KNOWN_ZONES,
                                          "description": "IANA time zone, e.g. Europe/Zagreb"})]
#: a BCP 47 language tag (reminder emails fall back to English for one we have no texts in)
LanguageTag = Annotated[str, StringConstraints(min_length=2, max_length=35,
                                               pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")]

# --- numbers ------------------------------------------------------------------------------------

#: PostgreSQL `int`, the type of every count column (quantity, occurrence, line_no, ...)
INT_MAX = 2_147_483_647


def integral(v: object) -> object:
    """JSON Schema's integer includes 3.0 (a number with no fraction), so the models take it too;
    a string ("3") or a boolean is still no integer (the fields are strict)."""
    if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:
        return int(v)
    return v


def whole(ge: int, le: int, **kwargs: Any) -> Any:
    """A bounded integer: strict, except that an integral float counts (see `integral`)."""
    # Field first: after a BeforeValidator pydantic would publish the bounds as unknown "ge"/"le" keys
    return Annotated[int, Field(strict=True, ge=ge, le=le, **kwargs), BeforeValidator(integral)]


Count = whole(1, INT_MAX)
#: for optional counts (`int | None = Field(None, **COUNT_BOUNDS)`, with `integral` as a before
#: field_validator in the model): keeps the annotation a plain `int | None` for the exporter
COUNT_BOUNDS: dict[str, Any] = {"strict": True, "ge": 1, "le": INT_MAX}
Quantity = whole(1, 1_000_000, description="units ordered, > 0")
#: an upstream order's quantity as received: payments declines one <= 0 as a business decline
#: ("invalid_order"), so the contract lets it through, bounded to fit the int column
SignedQuantity = whole(-1_000_000, 1_000_000)
Flag = Annotated[bool, Field(strict=True)]

# --- time ---------------------------------------------------------------------------------------


_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _timestamp_text(v: object) -> object:
    # pydantic would read a number, or a string of one ("-2.2e-16" in a query: the full OpenAPI
    # fuzz saw GET /orders take it as 1970-01-01), as seconds since 1970; the contract is RFC 3339
    if isinstance(v, datetime) or (isinstance(v, str) and _RFC3339_START.match(v)):
        return v
    raise ValueError("a timestamp is an RFC 3339 string, e.g. 2026-01-05T10:00:00Z")


def _utc(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset (RFC 3339)")
    # On the first and last day Python can represent, an offset may move the instant out of range
    # (astimezone raises OverflowError, which pydantic would not turn into a ValidationError).
    if v.date() in (date.min, date.max):
        raise ValueError("timestamp must not fall on 0001-01-01 or 9999-12-31")
    return v.astimezone(timezone.utc)


#: an RFC 3339 instant, read as UTC; bare (no Field) so that a query parameter can take it
UtcInstant = Annotated[
    datetime, BeforeValidator(_timestamp_text), AfterValidator(_utc),
    # the lookahead is for JSON Schema validators and generators only (pydantic parses the datetime)
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": r"^(?!0001-01-01|9999-12-31)"}),
]
UtcDateTime = Annotated[UtcInstant, Field(description="RFC 3339 timestamp, UTC")]


def date_text(v: object) -> object:
    """For date fields: pydantic would read an integer, or a string of digits, as a time stamp;
    the contract is an ISO 8601 calendar date."""
    if v is None or isinstance(v, date) or (isinstance(v, str) and _ISO_DATE.fullmatch(v)):
        return v
    raise ValueError("a date is an ISO 8601 string, e.g. 2026-01-05")


Day = Annotated[date, BeforeValidator(date_text)]

# --- money --------------------------------------------------------------------------------------

ISO_4217 = frozenset(list_currencies())
#: scale of every money column (numeric(14,2) in orders, payments, crm, cart)
BOOKS_SCALE = 2
#: integer digits numeric(14,2) holds: the largest storable amount is 999999999999.99
BOOKS_INTEGER_DIGITS = 12


def minor_digits(currency: str) -> int:
    """Digits after the decimal point the currency uses (EUR 2, JPY 0, KWD 3), per CLDR (babel)."""
    return get_currency_precision(currency)


def _check_currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"unknown ISO 4217 currency {code!r}")
    return code


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code"),
                     AfterValidator(_check_currency),
                     # the schema lists the codes the validator accepts, so a well-formed but unknown
                     # code is refused by both (and dead-lettered), never a surprise downstream
                     WithJsonSchema({"type": "string", "enum": sorted(ISO_4217),
                                     "description": "ISO 4217 currency code"})]

#: a decimal amount as it may arrive from upstream: signed (payments declines a negative price),
#: up to 14 integer and 4 fraction digits. 18 digits keep any amount, counted in its smallest
#: unit, inside a signed 64-bit integer; more than the books hold (12 integer, 2 fraction digits)
#: so that an order over the limit, or priced in fractions of a cent, reaches payments and is
#: declined with a message instead of being dead-lettered.
AMOUNT_INTEGER_DIGITS = 14
SIGNED_AMOUNT_PATTERN = rf"^-?[0-9]{{1,{AMOUNT_INTEGER_DIGITS}}}(\.[0-9]{{1,4}})?$"
#: an amount as the books hold it: numeric(14,2), never negative
BOOK_AMOUNT_PATTERN = rf"^[0-9]{{1,{BOOKS_INTEGER_DIGITS}}}(\.[0-9]{{1,{BOOKS_SCALE}}})?$"


def _decimal_string(pattern: str, description: str) -> Any:
    shape = re.compile(pattern)

    def parse(v: object) -> Decimal:
        if isinstance(v, float):
            raise ValueError("money must be a decimal string, never a float")
        if isinstance(v, Decimal):
            # what would go on the wire must fit the pattern: no NaN, no 1E+5000, no 30 digits
            # (the exponent is looked at first: formatting Decimal("1E+100000000") takes 100 MB)
            if not v.is_finite() or not -40 < v.as_tuple().exponent < 40 or not shape.fullmatch(format(v, "f")):
                raise ValueError(f"amount {v} is not a decimal string matching {pattern}")
            return v
        if not isinstance(v, str):
            raise ValueError("money must be a decimal string, e.g. \"12.50\"")
        # checked before Decimal() sees it: exponent forms, NaN, Infinity, spaces, Unicode digits
        # and thousands of digits never get as far as arithmetic
        if not shape.fullmatch(v):
            raise ValueError(f"amount {v[:40]!r} is not a decimal string matching {pattern}")
        return Decimal(v)

    return Annotated[
        Decimal,
        BeforeValidator(parse),
        WithJsonSchema({"type": "string", "pattern": pattern, "description": description}),
        PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    ]


# Money amounts travel as decimal strings: a float cannot hold 0.10 exactly.
DecimalString = _decimal_string(SIGNED_AMOUNT_PATTERN, "decimal amount as a string, e.g. \"12.50\"")
BookAmount = _decimal_string(BOOK_AMOUNT_PATTERN, "non-negative decimal amount as a string, at most "
                             "999999999999.99, e.g. \"12.50\"")

Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9\-]{1,39}$", description="catalog stock-keeping unit")]
Language = Literal["en", "es", "fr", "pl", "vi", "hr"]
PaymentMode = Literal["card", "account"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Money(Frozen):
    """An amount as received: an upstream order's prices and total (payments checks them)."""
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


def _booked_scale(currency: str) -> int:
    return min(minor_digits(currency), BOOKS_SCALE)


def _book_money_schema(schema: dict[str, Any]) -> None:
    """The currency's own decimals, in the schema: one branch per number of decimals allowed."""
    groups: dict[int, list[str]] = {}
    for code in sorted(ISO_4217):
        groups.setdefault(_booked_scale(code), []).append(code)
    branches = []
    for scale, codes in sorted(groups.items()):
        fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
        branches.append({"properties": {"currency": {"enum": codes},
                                        "amount": {"pattern": rf"^[0-9]{{1,{BOOKS_INTEGER_DIGITS}}}{fraction}$"}}})
    schema["anyOf"] = branches


class BookMoney(Money):
    """An amount as the books hold it (a price, a charge, a paid total): not negative, at most
    999999999999.99, and in no finer steps than the currency has (JPY whole yen) or the books
    keep (two decimals, so KWD to the 10 fils)."""

    # from_attributes: a Money built by a service (e.g. an order's total) is accepted and
    # re-checked against these bounds
    model_config = ConfigDict(from_attributes=True, json_schema_extra=_book_money_schema)
    amount: BookAmount = Field(description="amount in major units as a decimal string")

    @model_validator(mode="after")
    def _currency_decimals(self) -> "BookMoney":
        scale = _booked_scale(self.currency)
        if self.amount != self.amount.quantize(Decimal(1).scaleb(-scale)):
            raise ValueError(f"{self.currency} amounts have at most {scale} decimal places here, not {self.amount}")
        return self


class OrderLine(Frozen):
    sku: Sku
    name: Name = Field(description="product name at the time of ordering")
    quantity: SignedQuantity = Field(
        description="units ordered; upstream orders with a quantity <= 0 are declined by payments")
    unit_price: Money = Field(description="catalog unit price when the order was placed")

    @property
    def line_total(self) -> Money:
        # Arithmetic on a valid line, not input: 10^6 units of a 14-digit price is more than an
        # amount on the wire may be. Payments declines such an order; a view of it must not fail.
        return Money.model_construct(amount=self.unit_price.amount * self.quantity, currency=self.unit_price.currency)


class StandingLine(Frozen):
    sku: Sku
    quantity: Quantity


def _sendable(address: str) -> str:
    """What EmailStr accepts and the stdlib email package also sends to that one mailbox.

    EmailStr accepts internationalised addresses (ünï@exämple.com), which the stdlib encodes as
    RFC 2047 words inside the address and no relay delivers; JSON Schema's `format: email` is
    ASCII too. Round-tripping through Address also refuses anything the header parser would read
    as a group or as several addresses."""
    if not address.isascii():
        raise ValueError("email address must be ASCII (internationalised addresses cannot be sent)")
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ValueError(f"email address the mail system cannot address: {type(exc).__name__}") from None
    if parsed.addr_spec != address:
        raise ValueError("email address the mail system would rewrite")
    return address


@lru_cache(maxsize=4096)
def _email(address: str) -> str:
    # Cached: a pure function of the address (no DNS lookups), and the same few addresses come by
    # in every event of an order; email-validator was 13% of the notifications consumer's samples
    # (py-spy, issue 11). Refusals raise and are not cached; 4096 entries bound the memory.
    # exactly what the published schema says first (EMAIL_PATTERN): a client that sends what the
    # schema allows is never refused, and nothing the schema refuses gets through
    if not _EMAIL.fullmatch(address):
        raise ValueError("not an email address we can send to (name@domain.tld, ASCII, no special-use domain)")
    # what EmailStr checks (pydantic.networks.validate_email: email-validator, no DNS lookups)...
    normalised = validate_email(address)[1]
    # ...whose normalised form turns a punycode domain (xn--...) into Unicode: the ASCII form is the
    # one mail can be sent to (None when the local part itself is not ASCII: SMTPUTF8 only)
    ascii_form = email_validator.validate_email(normalised, check_deliverability=False).ascii_email
    if ascii_form is None:
        raise ValueError("email address must be ASCII before the @ (internationalised mailboxes cannot be sent)")
    return _sendable(ascii_form)


#: an EmailStr that the notifications service can also send to. Declared as a str (not the EmailStr
#: class) so the exporter still sees a text column; the schema says what EmailStr's says.
#: what _email lets through, for the schema: `format: email` alone also allows quoted local parts
#: ("a;b"@example.com), address literals and non-ASCII, all of which it refuses. Exact: it is what
#: email-validator accepts (dot-atom local part up to 64, labels of 1-63 without a leading or trailing
#: hyphen nor an R-LDH "ab--" (Punycode "xn--" is the way to send an IDN domain), a TLD ending in
#: a letter, no special-use TLD, 254 in all), so the OpenAPI fuzzing finds no address the schema
#: allows and the validator refuses (e.g. x@y.test).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z0-9][A-Za-z0-9\-]{0,61})?[A-Za-z]"
_SPECIAL_USE = "|".join("".join(f"[{c.upper()}{c}]" for c in name)
                        for name in ("arpa", "invalid", "local", "localhost", "onion", "test"))
# only negative lookaheads: generators (hypothesis, schemathesis) cannot honour positive ones
EMAIL_PATTERN = (rf"^(?!.{{255}})(?![^@]{{65}}){_ATEXT}+(?:\.{_ATEXT}+)*@"
                 rf"(?![^@]*\.(?:{_SPECIAL_USE})$)(?!(?:[A-Za-z0-9\-]*\.)*(?![Xx][Nn])[A-Za-z0-9]{{2}}--)"
                 rf"(?:{_LABEL}\.)+{_TLD}$")
_EMAIL = re.compile(EMAIL_PATTERN)
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email),
                  WithJsonSchema({"type": "string", "format": "email", "maxLength": 254, "pattern": EMAIL_PATTERN})]


class Delivery(Frozen):
    recipient: line(200, 1) = Field(description="person or department receiving the goods")
    address_lines: list[line(200, 1)] = Field(min_length=1, max_length=4, description="street address lines")
    city: line(100, 1) = Field(description="city or town")
    postal_code: line(20, 1) = Field(description="postal code as written in the country")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code")
    phone: line(40, 3) = Field(description="phone number for the carrier")
    email: Email = Field(description="where order and shipping confirmations are sent")


TOKEN_PATTERN = r"^tok_[A-Za-z0-9_]{4,64}$"
_TOKEN = re.compile(TOKEN_PATTERN)


def _payment_schema(schema: dict[str, Any]) -> None:
    # the model validator below, as the schema says it: a card needs a token, an account has none
    schema["anyOf"] = [
        {"properties": {"mode": {"const": "card"}, "card_token": {"type": "string"}}, "required": ["card_token"]},
        {"properties": {"mode": {"const": "account"}, "card_token": {"type": "null"}}},
    ]


class Payment(Frozen):
    """How the order is paid. Card payments carry only a gateway token, never a card number."""

    model_config = ConfigDict(json_schema_extra=_payment_schema)
    mode: PaymentMode
    card_token: str | None = Field(default=None, json_schema_extra={"pattern": TOKEN_PATTERN},
                                   description="payment-gateway token (tok_...); never a card number")

    @field_validator("card_token")
    @classmethod
    def _token_only(cls, v: str | None) -> str | None:
        # fullmatch: re.match with $ would let a trailing newline through
        if v is not None and not _TOKEN.fullmatch(v):
            raise ValueError("card_token must be a gateway token like tok_xxx (card numbers are never accepted)")
        return v

    @model_validator(mode="after")
    def _token_matches_mode(self) -> "Payment":
        if self.mode == "card" and not self.card_token:
            raise ValueError("card payment needs a card_token")
        if self.mode == "account" and self.card_token:
            raise ValueError("account payment takes no card_token")
        return self


# --- opaque payloads ------------------------------------------------------------------------------

#: a timer's payload is handed back as it came: a flat map of scalars (no nesting, so no depth bomb)
PayloadKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=ID_PATTERN)]
PayloadValue = Annotated[bool, Field(strict=True)] | whole(-(2**53 - 1), 2**53 - 1) | text(1000) | None
_PAYLOAD_SCHEMA = {
    # written out: pydantic would put the key pattern in patternProperties, which lets a key that
    # does not match it carry any value at all
    "type": "object", "maxProperties": 32,
    "propertyNames": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": ID_PATTERN},
    "additionalProperties": {"anyOf": [
        {"type": "boolean"},
        {"type": "integer", "minimum": -(2**53 - 1), "maximum": 2**53 - 1},
        {"type": "string", "maxLength": 1000, "pattern": TEXT_PATTERN},
        {"type": "null"}]},
}
Payload = Annotated[dict[PayloadKey, PayloadValue], Field(max_length=32), WithJsonSchema(_PAYLOAD_SCHEMA)]
