"""The card gateway PORT: what the payments service needs from a card processor.

A real gateway adapter is one new module with a class implementing `CardGateway`;
`services.payments.simulated_gateway.SimulatedGateway` is the in-house one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from runtime.errors import TransientError
from schemas.types import Money

CardDeclineReason = Literal["insufficient_funds", "suspected_fraud"]


@dataclass(frozen=True)
class Authorisation:
    """The gateway charged the card: its authorisation id is our charge reference."""

    authorisation_id: str
    amount: Money


class CardDeclined(Exception):
    """The gateway refused the charge (a final answer: do not retry)."""

    def __init__(self, reason_code: CardDeclineReason, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class GatewayTimeout(TransientError):
    """No answer from the gateway: the charge may or may not have happened.

    Retry with the SAME idempotency key; the gateway then returns the original
    authorisation instead of charging again.
    """


class CardGateway(Protocol):
    def authorise(self, token: str, amount: Money, idempotency_key: str) -> Authorisation:
        """Charge `amount` to the card behind `token`, at most once per `idempotency_key`.

        Raises CardDeclined (final) or GatewayTimeout (transient: retry with the same key).
        """
        ...
