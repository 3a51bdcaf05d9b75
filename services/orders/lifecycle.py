"""The order lifecycle as a pure state machine.

    placed ──verify_payment──▶ payment_verified ──confirm──▶ confirmed ──ship──▶ shipped
      │                              │                          │
      └─decline─▶ declined           └──────cancel──────────────┴─▶ cancelled (also from placed)

Events reach us late, twice, or before the event they follow (different topics have no order
between them), so every step on every state has one of four answers:

- apply:  the step moves the order forward;
- ignore: the order is already there or past it (a repeat or a late event): a no-op that the
          timeline records, never a move backwards;
- wait:   too early (a shipment reported before the payment was confirmed): keep the event
          and try again when the order moves;
- refuse: the step contradicts where the order is (shipping a cancelled order, a payment
          verified after it was declined): someone has to look at it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    PLACED = "placed"
    PAYMENT_VERIFIED = "payment_verified"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DECLINED = "declined"
    CANCELLED = "cancelled"


class Step(StrEnum):
    VERIFY_PAYMENT = "verify_payment"
    CONFIRM = "confirm"
    DECLINE = "decline"
    SHIP = "ship"
    CANCEL = "cancel"


Verdict = Literal["apply", "ignore", "wait", "refuse"]

#: the only moves an order makes
TRANSITIONS: dict[tuple[State, Step], State] = {
    (State.PLACED, Step.VERIFY_PAYMENT): State.PAYMENT_VERIFIED,
    (State.PLACED, Step.DECLINE): State.DECLINED,
    (State.PLACED, Step.CANCEL): State.CANCELLED,
    (State.PAYMENT_VERIFIED, Step.CONFIRM): State.CONFIRMED,
    (State.PAYMENT_VERIFIED, Step.CANCEL): State.CANCELLED,
    (State.CONFIRMED, Step.SHIP): State.SHIPPED,
    (State.CONFIRMED, Step.CANCEL): State.CANCELLED,
}

# Position on the happy path: a step whose target is at or behind the order's position is stale.
_PROGRESS = {State.PLACED: 0, State.PAYMENT_VERIFIED: 1, State.CONFIRMED: 2, State.SHIPPED: 3}
_TARGET = {Step.VERIFY_PAYMENT: State.PAYMENT_VERIFIED, Step.CONFIRM: State.CONFIRMED, Step.SHIP: State.SHIPPED}

_REFUSALS: dict[tuple[State, Step], str] = {
    (State.PLACED, Step.CONFIRM): "an order is confirmed only after its payment is verified",
    (State.SHIPPED, Step.CANCEL): "the order has already shipped",
    (State.DECLINED, Step.VERIFY_PAYMENT): "the payment was declined earlier; a verification now needs a person to "
                                           "check the charge",
    (State.DECLINED, Step.CONFIRM): "the payment was declined",
    (State.DECLINED, Step.SHIP): "the payment was declined, so the order must not ship",
    (State.DECLINED, Step.CANCEL): "the payment was declined; the order is already closed",
    (State.CANCELLED, Step.VERIFY_PAYMENT): "the order was cancelled; the verified payment must be refunded",
    (State.CANCELLED, Step.CONFIRM): "the order was cancelled",
    (State.CANCELLED, Step.SHIP): "the order was cancelled, so it must not ship",
}


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    state: State          # where the order is after the step
    reason: str = ""


def decide(state: State | str, step: Step | str) -> Decision:
    state, step = State(state), Step(step)
    target = TRANSITIONS.get((state, step))
    if target is not None:
        return Decision("apply", target)
    if (state, step) in _REFUSALS:
        return Decision("refuse", state, _REFUSALS[(state, step)])
    if step is Step.SHIP and state in (State.PLACED, State.PAYMENT_VERIFIED):
        return Decision("wait", state, "the order is not confirmed yet")
    if step is Step.DECLINE:
        if state is State.DECLINED:
            return Decision("ignore", state, "the payment was already declined")
        if state is State.CANCELLED:
            return Decision("ignore", state, "the order was already cancelled")
        return Decision("ignore", state, f"late payment decline: the payment was verified and the order is {state}")
    if step is Step.CANCEL:
        return Decision("ignore", state, "the order was already cancelled")
    if _PROGRESS.get(state, -1) >= _PROGRESS[_TARGET[step]]:
        return Decision("ignore", state, f"the order is already {state}")
    raise AssertionError(f"lifecycle has no rule for {step} on {state}")  # pragma: no cover

