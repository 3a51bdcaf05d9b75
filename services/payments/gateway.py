"""The card gateway PORT: what the payments service needs from a card processor.

A real gateway adapter is one new module, ``services/payments/<name>_gateway.py``, with a class
implementing `CardGateway` and a ``from_settings(settings) -> CardGateway`` function; it is
chosen with ``SALESBUS_CARD_GATEWAY=<name>`` (default ``simulated``:
`services.payments.simulated_gateway.SimulatedGateway`). Its own credentials are its own
``SALESBUS_CARD_GATEWAY_*`` variables, read in that module.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

from runtime.config import Settings, settings
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


def gateway_from_config(cfg: Settings, name: str | None = None) -> CardGateway:
    """The one place the adapter is chosen: SALESBUS_CARD_GATEWAY=<name> -> <name>_gateway.py."""
    name = name or os.environ.get("SALESBUS_CARD_GATEWAY", "simulated")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"SALESBUS_CARD_GATEWAY={name!r} is not a card gateway adapter name (e.g. simulated)")
    try:
        module = importlib.import_module(f"services.payments.{name}_gateway")
    except ModuleNotFoundError as exc:
        raise ValueError(f"no card gateway adapter services/payments/{name}_gateway.py "
                         f"(SALESBUS_CARD_GATEWAY={name!r})") from exc
    return module.from_settings(cfg)


@cache
def card_gateway() -> CardGateway:
    """This process's gateway, built once from its environment."""
    return gateway_from_config(settings())
