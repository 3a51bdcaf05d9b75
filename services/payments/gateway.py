"""The card gateway PORT: what the payments service needs from a card processor.

A real gateway adapter is one new module, ``services/payments/<name>_gateway.py``, with a class
implementing `CardGateway` and a ``from_settings(settings) -> CardGateway`` function; it is
chosen with ``SALESBUS_CARD_GATEWAY=<name>`` (Settings.card_gateway, default ``simulated``:
`services.payments.simulated_gateway.SimulatedGateway`). Its own credentials are its own
``card_gateway_*`` Settings fields, which its ``from_settings`` reads. The payments service builds
one gateway per process (services/payments/service.py) and hands it to the handlers as `gateway`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Literal, Protocol

from runtime.config import Settings
from runtime.errors import TransientError
from schemas.types import Money

CardDeclineReason = Literal["insufficient_funds", "suspected_fraud", "card_declined"]


@dataclass(frozen=True)
class Authorisation:
    """The gateway charged the card: its authorisation id is our charge reference."""

    authorisation_id: str
    amount: Money


@dataclass(frozen=True)
class Refund:
    """The gateway refunded (part of) a charge: its refund id is our refund reference."""

    refund_id: str
    amount: Money


class RefundRefused(Exception):
    """The gateway will not refund (more than is left of the charge, an unknown charge): final."""


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

    def refund(self, authorisation_id: str, amount: Money, idempotency_key: str) -> Refund:
        """Give back `amount` of the charge `authorisation_id`, at most once per `idempotency_key`.

        Raises RefundRefused (final: never more than is left of the charge) or GatewayTimeout
        (transient: retry with the same key, which returns the first refund).
        """
        ...


def gateway_from_config(cfg: Settings, name: str | None = None) -> CardGateway:
    """The one place the adapter is chosen: SALESBUS_CARD_GATEWAY=<name> -> <name>_gateway.py."""
    name = name or cfg.card_gateway
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"SALESBUS_CARD_GATEWAY={name!r} is not a card gateway adapter name (e.g. simulated)")
    try:
        module = importlib.import_module(f"services.payments.{name}_gateway")
    except ModuleNotFoundError as exc:
        raise ValueError(f"no card gateway adapter services/payments/{name}_gateway.py "
                         f"(SALESBUS_CARD_GATEWAY={name!r})") from exc
    return module.from_settings(cfg)
