"""The PromQL of deploy/: the Grafana dashboard's queries and the Prometheus alert rules, and the
metric names (and matcher label names) they select, found by parsing each query (promql-parser)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "salesbus.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
#: Grafana's variables, replaced by what they stand for when the query runs
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$service": ".*"}
#: series Prometheus makes itself for every target (no service exports them)
PROMETHEUS_OWN = {"up"}


@dataclass(frozen=True)
class Query:
    where: str   # "dashboard: <panel title>" or "alert: <name>"
    expr: str


def dashboard_queries() -> list[Query]:
    dash = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            found.append(Query(f"dashboard: {panel['title']}", grafana_to_promql(target["expr"])))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            # label_values(metric, label): the variable lists the label's values on that metric
            inner = var["query"]["query"].removeprefix("label_values(").removesuffix(")")
            metric, label = (part.strip() for part in inner.split(","))
            found.append(Query(f"dashboard variable: {var['name']}", f"count by ({label}) ({metric})"))
    return found


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def rule_queries() -> list[Query]:
    rules = yaml.safe_load(RULES.read_text())
    return [Query(f"alert: {rule['alert']}", rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def all_queries() -> list[Query]:
    return dashboard_queries() + rule_queries()


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names in its matchers) of every vector selector in `expr`."""
    found: list[tuple[str, set[str]]] = []

    def walk(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers} - {"__name__"}
            found.append((node.name, labels))
            return
        for attr in ("expr", "lhs", "rhs", "args", "param", "vector_selector"):
            child = getattr(node, attr, None)
            for c in child if isinstance(child, list) else [child]:
                if c is not None and not isinstance(c, (str, int, float)):
                    walk(c)

    walk(promql_parser.parse(expr))
    return found


def referenced_metrics() -> dict[str, set[str]]:
    """metric name -> where it is used (dashboard panels, alerts)."""
    names: dict[str, set[str]] = {}
    for q in all_queries():
        for name, _ in selectors(q.expr):
            names.setdefault(name, set()).add(q.where)
    return names


def sample_names(family_name: str, family_type: str) -> set[str]:
    """The series names a family of the exposition format can be selected by."""
    if family_type == "counter":
        return {family_name + "_total", family_name + "_created"}
    if family_type == "histogram":
        return {family_name + s for s in ("_bucket", "_sum", "_count", "_created")}
    if family_type == "summary":
        return {family_name, family_name + "_sum", family_name + "_count", family_name + "_created"}
    return {family_name}
