"""A mistyped topic is refused with the nearest known name and the list (before: `salesbus tap
OrderPlcaed` printed nothing and exited 0, following a topic nobody writes to)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.topic_names import UnknownTopic, check, known
from schemas import REGISTRY

runner = CliRunner()


def test_known_topics_are_the_registry_and_its_dead_letter_topics():
    assert set(known()) == set(REGISTRY) | {f"{t}.DLQ" for t in REGISTRY}
    assert check(["OrderPlaced", "OrderPlaced.DLQ"]) == ["OrderPlaced", "OrderPlaced.DLQ"]


def test_a_typo_names_the_nearest_topic_of_its_kind():
    with pytest.raises(UnknownTopic, match=r"unknown topic OrderPlcaed; did you mean OrderPlaced\? known: "):
        check(["OrderPlaced", "OrderPlcaed"])
    with pytest.raises(UnknownTopic, match=r"did you mean PaymentDeclined\.DLQ\?"):
        check(["PaymentDeclinde.DLQ"])
    with pytest.raises(UnknownTopic, match=r"unknown topic zzz; known: OrderPlaced, "):
        check(["zzz"])


def test_export_accepts_no_dead_letter_topic_names_as_known():
    with pytest.raises(UnknownTopic):
        check(["OrderPlaced.DLQ"], dead_letters=False)


@pytest.mark.parametrize("args", [["tap", "OrderPlcaed"], ["tap", "OrderPlaced", "OrderShiped", "--no-follow"],
                                  ["dlq", "list", "OrderPlcaed"], ["dlq", "show", "OrderPlcaed.DLQ", "0:1"],
                                  ["dlq", "redrive", "OrderPlcaed.DLQ", "0:1"],
                                  ["export", "OrderPlcaed", "--out", "/tmp/never-written.parquet"]])
def test_every_command_taking_topics_refuses_an_unknown_one_before_reaching_a_broker(args):
    # no broker is configured here: the topic check comes first, so the answer is about the topic
    result = runner.invoke(app, args, env={"SALESBUS_KAFKA_BOOTSTRAP": "127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    assert "unknown topic" in result.output and "did you mean" in result.output
    assert "OrderConfirmed" in result.output  # the list of known topics
