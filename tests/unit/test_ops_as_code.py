"""deploy/'s dashboard and alert rules are checked like code: promtool (Debian's `prometheus`
package; `make test` installs it when run as root) checks the rules, runs their unit tests and
checks the dashboard's queries; every metric either selects is one the services define, with
the labels it matches on. (tests/integration/test_ops_metrics_exported.py checks the same names
against the /metrics of running service processes.)"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.ops_queries import (DASHBOARD, PROMETHEUS_OWN, ROOT, RULES, all_queries, dashboard_queries,
                               referenced_metrics, rule_queries, sample_names, selectors)

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RUNBOOKS = ROOT / "docs" / "operating.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on PATH: install Debian's `prometheus` "
                                                            "package (`make test` does, as root)")


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_checks_the_rules_and_the_scrape_config():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("alert", [q.where.removeprefix("alert: ") for q in rule_queries()])
def test_every_alert_is_tested_so_that_dropping_it_fails_the_unit_tests(alert, tmp_path):
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["rules"] = [r for r in group["rules"] if r.get("alert") != alert]
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(PROMETHEUS_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"no unit test expects {alert} to fire"


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    """Prometheus's own parser over the dashboard's queries (as recording rules, the one way
    promtool checks PromQL without a server)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q.expr} for i, q in enumerate(dashboard_queries())]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _defined_families() -> dict[str, set[str]]:
    """series name -> label names, for every metric the services' modules define."""
    import runtime.containment  # noqa: F401
    import runtime.metrics  # noqa: F401
    import services.analytics.metrics  # noqa: F401
    import services.notifications.sender  # noqa: F401

    defined: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe() if hasattr(collector, "describe") else []:
            for name in sample_names(family.name, family.type):
                defined[name] = labels | ({"le"} if family.type == "histogram" else set())
    return defined


def test_every_metric_the_dashboard_and_rules_select_is_defined_with_the_labels_they_match():
    defined = _defined_families()
    problems = []
    for q in all_queries():
        for name, labels in selectors(q.expr):
            if name in PROMETHEUS_OWN:
                continue
            if name not in defined:
                problems.append(f"{q.where}: {name} is not a metric of any service")
            elif labels - defined[name] - {"instance", "job"}:
                problems.append(f"{q.where}: {name} has no label {sorted(labels - defined[name])}")
    assert not problems, "\n".join(problems)


def test_the_check_above_can_fail():
    assert selectors('sum by (topic) (rate(salesbus_no_such_total{service="x"}[5m])) > up') == [
        ("salesbus_no_such_total", {"service"}), ("up", set())]
    assert "salesbus_no_such_total" not in _defined_families()


def test_the_dashboard_shows_what_issue_15_asks_for():
    used = referenced_metrics()
    for metric in ("salesbus_records_consumed_total", "salesbus_consumer_lag",
                   "salesbus_batch_handling_seconds_bucket", "salesbus_dead_lettered_total",
                   "salesbus_outbox_oldest_age_seconds", "salesbus_emails_total", "salesbus_http_requests_total"):
        assert any(w.startswith("dashboard") for w in used.get(metric, ())), f"no panel shows {metric}"


def test_dashboard_layout_is_sound():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in dash["panels"]:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and p.get("description"), p["title"]
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]


def test_every_alert_has_a_runbook_in_docs_operating():
    text = RUNBOOKS.read_text()
    headings = {line.lstrip("#").strip().lower() for line in text.splitlines() if line.startswith("### ")}
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert name.lower() in headings, f"docs/operating.md has no '### {name}'"
            assert rule["annotations"]["runbook"] == f"docs/operating.md#{name.lower()}"
