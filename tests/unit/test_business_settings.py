"""Business settings and the simulated gateway's test tokens were documented only in the source
(a real seller's first order was shipped by the simulated DC before anyone knew it ran): each
one is in docs/settings.md and in `salesbus up --help` / `salesbus demo --help`, and the list
names every business variable the services read."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.business_settings import SETTINGS, TEST_TOKENS
from runtime.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "settings.md").read_text()


def _help(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


@pytest.mark.parametrize("command", ["up", "demo"])
def test_help_lists_every_business_setting_and_test_token(command):
    text = _help(command)
    for name, default, _ in SETTINGS:
        assert f"{name}={default}" in text, name
    for token, _ in TEST_TOKENS:
        assert token in text, token


def test_the_docs_list_the_same_settings_and_tokens():
    for name, default, _ in SETTINGS:
        assert f"`{name}`" in DOC and f"`{default.split()[0]}`" in DOC, name
    for token, _ in TEST_TOKENS:
        assert f"`{token}`" in DOC, token


def test_the_tokens_are_the_simulated_gateways_own():
    source = (ROOT / "services" / "payments" / "simulated_gateway.py").read_text()
    documented = set(re.findall(r"^\s+(tok_\w+)\s{2,}", source, re.M))
    assert documented == {t for t, _ in TEST_TOKENS}


def test_every_business_variable_the_services_read_is_listed():
    read = set()
    for path in [*(ROOT / "services").rglob("*.py")]:
        read |= set(re.findall(r"SALESBUS_(?:CRM|OVERDUE|DC)_[A-Z_]+", path.read_text()))
    read |= {"SALESBUS_DC_SHIP_DELAY_S", "SALESBUS_OVERDUE_REMINDER_DAYS"}  # Settings fields, read by name
    assert read - {"SALESBUS_CRM_"} <= {name for name, _, _ in SETTINGS}

