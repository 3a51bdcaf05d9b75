"""A Stripe adapter for the `CardGateway` port (``SALESBUS_CARD_GATEWAY=stripe``).

Charges are a PaymentMethod made from the card token, then a PaymentIntent created and
confirmed with it in one call, both idempotent on our key (the order id), so a retry after a
lost answer returns the first PaymentIntent; refunds are Refunds of that PaymentIntent,
idempotent on our refund key. Stripe never sees more than a token, and we never see a card.

Settings fields, given to `from_settings` as the port says (gateway.py):
  card_gateway_stripe_api_key   the secret key (required; SALESBUS_CARD_GATEWAY_STRIPE_API_KEY)
  card_gateway_stripe_api_base  another API address, e.g. stripe-mock's http://127.0.0.1:12111

Answers mapped to ours:
  card declined: insufficient_funds -> insufficient_funds; fraudulent, stolen_card, lost_card,
                 pickup_card, merchant_blacklist -> suspected_fraud; any other -> card_declined
  a PaymentIntent that needs the customer (requires_action, requires_payment_method) -> card_declined
  no answer (APIConnectionError), rate limited, Stripe's 5xx -> GatewayTimeout (retried, same key)
  refunds refused (already refunded, more than charged) -> RefundRefused
  anything else (bad key, invalid request) -> raised as is: a fault for an operator, dead-lettered
"""
from __future__ import annotations

from decimal import Decimal

import stripe

from runtime.config import Settings
from schemas.types import Money, minor_digits
from services.payments.gateway import Authorisation, CardDeclined, GatewayTimeout, Refund, RefundRefused

_FRAUD = {"fraudulent", "stolen_card", "lost_card", "pickup_card", "merchant_blacklist"}
#: PaymentIntent states in which the money is ours (captured, or authorised for capture)
_CHARGED = {"succeeded", "requires_capture", "processing"}


def minor_units(amount: Money) -> int:
    """Stripe's integer amount: 12.50 EUR -> 1250, 500 JPY -> 500."""
    scaled = amount.amount.scaleb(minor_digits(amount.currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {amount.currency} has")
    return int(scaled)


def from_minor(units: int, currency: str) -> Money:
    return Money(amount=Decimal(units).scaleb(-minor_digits(currency)), currency=currency.upper())


def _transient(exc: stripe.StripeError) -> bool:
    return isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)) or \
        (exc.http_status is not None and exc.http_status >= 500)


class StripeGateway:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def authorise(self, token: str, amount: Money, idempotency_key: str) -> Authorisation:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        try:
            method = self._client.v1.payment_methods.create(
                params={"type": "card", "card": {"token": token}},
                options={"idempotency_key": f"salesbus-method-{idempotency_key}"})
            intent = self._client.v1.payment_intents.create(
                params={"amount": minor_units(amount), "currency": amount.currency.lower(), "confirm": True,
                        "payment_method_types": ["card"], "payment_method": method.id,
                        "metadata": {"salesbus_key": idempotency_key}},
                options={"idempotency_key": f"salesbus-charge-{idempotency_key}"})
        except stripe.CardError as exc:
            code = exc.error.decline_code if exc.error else None
            if code == "insufficient_funds":
                raise CardDeclined("insufficient_funds", "the card has insufficient funds") from None
            if code in _FRAUD:
                raise CardDeclined("suspected_fraud", "the card issuer refused the charge") from None
            raise CardDeclined("card_declined", "the card issuer declined the charge") from None
        except stripe.StripeError as exc:
            if _transient(exc):
                raise GatewayTimeout(f"Stripe did not answer for key {idempotency_key!r}: {exc}") from exc
            raise
        if intent.status not in _CHARGED:
            raise CardDeclined("card_declined", f"the card needs the cardholder ({intent.status})")
        return Authorisation(authorisation_id=intent.id, amount=amount)

    def refund(self, authorisation_id: str, amount: Money, idempotency_key: str) -> Refund:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        try:
            refund = self._client.v1.refunds.create(
                params={"payment_intent": authorisation_id, "amount": minor_units(amount),
                        "metadata": {"salesbus_key": idempotency_key}},
                options={"idempotency_key": f"salesbus-refund-{idempotency_key}"})
        except stripe.InvalidRequestError as exc:
            if exc.code in {"charge_already_refunded", "amount_too_large", "charge_disputed"}:
                raise RefundRefused(f"Stripe refused the refund of {authorisation_id}: {exc.user_message or exc}") \
                    from None
            raise
        except stripe.StripeError as exc:
            if _transient(exc):
                raise GatewayTimeout(f"Stripe did not answer the refund for key {idempotency_key!r}: {exc}") from exc
            raise
        return Refund(refund_id=refund.id, amount=amount)


def client_from_settings(cfg: Settings) -> stripe.StripeClient:
    if not cfg.card_gateway_stripe_api_key:
        raise ValueError("SALESBUS_CARD_GATEWAY=stripe needs SALESBUS_CARD_GATEWAY_STRIPE_API_KEY")
    key, base = cfg.card_gateway_stripe_api_key.get_secret_value(), cfg.card_gateway_stripe_api_base
    # retries are ours (the consumer's, with the same idempotency key), not the SDK's in the handler
    return stripe.StripeClient(key, base_addresses={"api": base} if base else None, max_network_retries=0)


def from_settings(cfg: Settings) -> StripeGateway:
    return StripeGateway(client_from_settings(cfg))
