"""The order lifecycle state machine: every (state, step) pair, and no move ever goes backwards."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from services.orders.confirmation import ALPHABET, PATTERN, new_confirmation_number
from services.orders.lifecycle import TRANSITIONS, State, Step, decide

P, V, C, S, D, X = (State.PLACED, State.PAYMENT_VERIFIED, State.CONFIRMED, State.SHIPPED, State.DECLINED,
                    State.CANCELLED)

# (state, step) -> (verdict, state afterwards). Written out in full so a change to any rule shows here.
EXPECTED = {
    (P, Step.VERIFY_PAYMENT): ("apply", V),
    (P, Step.CONFIRM): ("refuse", P),
    (P, Step.DECLINE): ("apply", D),
    (P, Step.SHIP): ("wait", P),
    (P, Step.CANCEL): ("apply", X),
    (V, Step.VERIFY_PAYMENT): ("ignore", V),
    (V, Step.CONFIRM): ("apply", C),
    (V, Step.DECLINE): ("ignore", V),
    (V, Step.SHIP): ("wait", V),
    (V, Step.CANCEL): ("apply", X),
    (C, Step.VERIFY_PAYMENT): ("ignore", C),
    (C, Step.CONFIRM): ("ignore", C),
    (C, Step.DECLINE): ("ignore", C),
    (C, Step.SHIP): ("apply", S),
    (C, Step.CANCEL): ("apply", X),
    (S, Step.VERIFY_PAYMENT): ("ignore", S),
    (S, Step.CONFIRM): ("ignore", S),
    (S, Step.DECLINE): ("ignore", S),
    (S, Step.SHIP): ("ignore", S),
    (S, Step.CANCEL): ("refuse", S),
    (D, Step.VERIFY_PAYMENT): ("refuse", D),
    (D, Step.CONFIRM): ("refuse", D),
    (D, Step.DECLINE): ("ignore", D),
    (D, Step.SHIP): ("refuse", D),
    (D, Step.CANCEL): ("refuse", D),
    (X, Step.VERIFY_PAYMENT): ("refuse", X),
    (X, Step.CONFIRM): ("refuse", X),
    (X, Step.DECLINE): ("ignore", X),
    (X, Step.SHIP): ("refuse", X),
    (X, Step.CANCEL): ("ignore", X),
}
HAPPY_PATH = [P, V, C, S]
TERMINAL = {S, D, X}


def test_every_state_and_step_is_covered():
    assert set(EXPECTED) == {(state, step) for state in State for step in Step}


@pytest.mark.parametrize(("state", "step"), list(EXPECTED), ids=lambda v: str(v))
def test_decision(state, step):
    verdict, after = EXPECTED[(state, step)]
    decision = decide(state, step)
    assert (decision.verdict, decision.state) == (verdict, after)
    if verdict != "apply":
        assert decision.reason, "a step that does not apply must say why"


def test_only_the_listed_transitions_move_an_order():
    moves = {pair: after for pair, (verdict, after) in EXPECTED.items() if verdict == "apply"}
    assert moves == TRANSITIONS


@pytest.mark.parametrize(("state", "step"), [pair for pair, (v, _) in EXPECTED.items() if v in ("refuse", "wait")])
def test_refused_and_premature_steps_leave_the_order_where_it_is(state, step):
    decision = decide(state, step)
    assert decision.state is State(state) and decision.reason


def test_late_payment_verified_after_shipping_is_a_no_op():
    assert decide(S, Step.VERIFY_PAYMENT).state is S
    assert decide(S, Step.VERIFY_PAYMENT).verdict == "ignore"


def test_states_and_steps_accept_their_stored_strings():
    assert decide("confirmed", "ship").state is S


@given(st.lists(st.sampled_from(list(Step)), max_size=25))
def test_no_sequence_of_events_moves_an_order_backwards(steps):
    state = P
    for step in steps:
        decision = decide(state, step)
        if decision.verdict in ("refuse", "wait"):
            continue  # the event is refused or kept; the order stays where it is
        after = decision.state
        if state in TERMINAL:
            assert after is state, f"{step} moved a {state} order to {after}"
        elif after in HAPPY_PATH:
            assert HAPPY_PATH.index(after) >= HAPPY_PATH.index(state), f"{step}: {state} -> {after}"
        state = after


def test_confirmation_number_shape_and_alphabet():
    assert not set("ILOU") & set(ALPHABET) and len(ALPHABET) == 32
    numbers = {new_confirmation_number() for _ in range(2000)}
    assert len(numbers) == 2000
    assert all(PATTERN.match(n) for n in numbers), numbers


def test_confirmation_number_uses_the_whole_alphabet():
    rng = random.Random(7)
    seen = set("".join(new_confirmation_number(rng.randrange) for _ in range(200)).replace("SB-", "").replace("-", ""))
    assert seen == set(ALPHABET)
