"""The Stripe adapter's mapping of Stripe's answers to the CardGateway port, with the SDK's own
request path and a canned HTTP layer (no network). tests/integration/test_stripe_mock.py runs it
against stripe-mock, Stripe's API simulator."""
from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import stripe

from schemas.types import Money
from services.payments.gateway import CardDeclined, GatewayTimeout, RefundRefused, gateway_from_config
from services.payments.stripe_gateway import StripeGateway, from_minor, minor_units


class Canned(stripe.HTTPClient):
    """Answers every request with the next (status, body); records what was sent."""
    name = "canned"

    def __init__(self, *answers):
        super().__init__()
        self.answers, self.sent = list(answers), []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.sent.append((method, url, dict(headers or {}), parse_qs(post_data or "")))
        status, body = self.answers.pop(0)
        if isinstance(body, Exception):
            raise body
        return json.dumps(body), status, {}

    def close(self):
        pass


def gateway(*answers) -> tuple[StripeGateway, Canned]:
    http = Canned(*answers)
    return StripeGateway(stripe.StripeClient("sk_test_123", http_client=http, max_network_retries=0)), http


def eur(s: str) -> Money:
    return Money(amount=Decimal(s), currency="EUR")


def card_error(decline_code: str) -> tuple[int, dict]:
    return 402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": decline_code,
                           "message": "Your card was declined."}}


METHOD = (200, {"id": "pm_1", "object": "payment_method", "type": "card"})


def test_a_charge_is_a_confirmed_payment_intent_with_the_token_and_our_idempotency_key():
    gw, http = gateway(METHOD, (200, {"id": "pi_123", "object": "payment_intent", "status": "succeeded",
                                      "amount": 2450, "currency": "eur"}))
    auth = gw.authorise("tok_visa", eur("24.50"), idempotency_key="o-1")
    assert (auth.authorisation_id, auth.amount) == ("pi_123", eur("24.50"))
    [(_, method_url, method_headers, method_body), (verb, url, headers, body)] = http.sent
    assert method_url.endswith("/v1/payment_methods") and method_body["card[token]"] == ["tok_visa"]
    assert method_headers["Idempotency-Key"] == "salesbus-method-o-1"
    assert verb == "post" and url.endswith("/v1/payment_intents")
    assert headers["Idempotency-Key"] == "salesbus-charge-o-1"
    assert body["amount"] == ["2450"] and body["currency"] == ["eur"] and body["confirm"] == ["true"]
    assert body["payment_method"] == ["pm_1"]


@pytest.mark.parametrize("decline_code,reason", [("insufficient_funds", "insufficient_funds"),
                                                 ("fraudulent", "suspected_fraud"), ("stolen_card", "suspected_fraud"),
                                                 ("do_not_honor", "card_declined")])
def test_declines_map_to_our_reason_codes(decline_code, reason):
    gw, _ = gateway(METHOD, card_error(decline_code))
    with pytest.raises(CardDeclined) as declined:
        gw.authorise("tok_visa", eur("10.00"), idempotency_key="o-2")
    assert declined.value.reason_code == reason


def test_an_intent_waiting_for_the_cardholder_is_a_decline_not_a_charge():
    gw, _ = gateway(METHOD, (200, {"id": "pi_9", "object": "payment_intent", "status": "requires_action"}))
    with pytest.raises(CardDeclined, match="requires_action"):
        gw.authorise("tok_visa", eur("10.00"), idempotency_key="o-3")


@pytest.mark.parametrize("answer", [(500, {"error": {"type": "api_error", "message": "boom"}}),
                                    (429, {"error": {"type": "invalid_request_error", "code": "rate_limit",
                                                     "message": "slow down"}})])
def test_stripe_failing_for_now_is_a_gateway_timeout_to_retry_with_the_same_key(answer):
    gw, _ = gateway(METHOD, answer)
    with pytest.raises(GatewayTimeout):
        gw.authorise("tok_visa", eur("10.00"), idempotency_key="o-4")


def test_a_bad_key_is_not_retried_for_ever():
    gw, _ = gateway((401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}))
    with pytest.raises(stripe.AuthenticationError):
        gw.authorise("tok_visa", eur("10.00"), idempotency_key="o-5")


def test_a_refund_refunds_the_payment_intent_once_per_key_and_a_refused_one_says_so():
    gw, http = gateway((200, {"id": "re_1", "object": "refund", "amount": 1000, "status": "succeeded"}),
                       (400, {"error": {"type": "invalid_request_error", "code": "charge_already_refunded",
                                        "message": "already refunded"}}))
    assert gw.refund("pi_123", eur("10.00"), idempotency_key="r-1").refund_id == "re_1"
    _, url, headers, body = http.sent[0]
    assert url.endswith("/v1/refunds") and headers["Idempotency-Key"] == "salesbus-refund-r-1"
    assert body["payment_intent"] == ["pi_123"] and body["amount"] == ["1000"]
    with pytest.raises(RefundRefused):
        gw.refund("pi_123", eur("10.00"), idempotency_key="r-2")


def test_amounts_in_minor_units_follow_the_currency():
    assert minor_units(eur("12.50")) == 1250
    assert minor_units(Money(amount=Decimal("500"), currency="JPY")) == 500
    assert from_minor(1250, "eur") == eur("12.50")
    with pytest.raises(ValueError):
        minor_units(Money(amount=Decimal("1.5"), currency="JPY"))


def test_the_adapter_is_chosen_by_name_and_needs_its_key(monkeypatch):
    from runtime.config import Settings
    monkeypatch.delenv("SALESBUS_CARD_GATEWAY_STRIPE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="STRIPE_API_KEY"):
        gateway_from_config(Settings(), "stripe")
    monkeypatch.setenv("SALESBUS_CARD_GATEWAY_STRIPE_API_KEY", "sk_test_123")
    assert isinstance(gateway_from_config(Settings(), "stripe"), StripeGateway)
