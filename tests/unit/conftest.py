"""The unit tier is pure: it sees Settings' own defaults, never the SALESBUS_* settings a test
session's broker put in the environment (Tansu's 6 s sessions and 3 partitions, the harness's
keys file). Before the tiers ran in any order, unit tests ran before the stack had set them;
after the e2e tier, four deploy-manifest tests compared the manifests with Tansu's values."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def without_session_settings(monkeypatch):
    for name in [k for k in os.environ if k.startswith("SALESBUS_")]:
        monkeypatch.delenv(name)
