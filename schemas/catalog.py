"""Who produces and who consumes each topic, read from the code so the AsyncAPI document cannot
drift from it: a service produces the events its code constructs (services/<name>/**.py, read
as source, not imported), and consumes the topics of its `HANDLERS` table. Only what no code of
ours produces is declared here: the upstream systems that publish straight onto the bus."""
from __future__ import annotations

import ast
from pathlib import Path

#: producers outside this repository (upstream systems publishing onto the bus), by topic
UPSTREAM_PRODUCERS: dict[str, list[str]] = {
    "OrderPlaced": ["upstream EDI gateway"],
    "OrderShipped": ["upstream warehouse system"],
    "ContactLogged": ["upstream website tracking, telephony, mail gateway"],
    "PaymentReceived": ["upstream bank or ERP feed"],
}

ANALYST_CONSUMERS = ["analytics (faust)", "salesbus tap / export"]

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def constructed_events(package: Path, event_classes: dict[str, str]) -> set[str]:
    """The event types whose class is called (`OrderPlaced(...)`) anywhere in a service package."""
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in event_classes:
                found.add(event_classes[node.func.id])
    return found


def producers(services: tuple[str, ...], event_classes: dict[str, str]) -> dict[str, list[str]]:
    """topic -> its producers: our services in the order given, then the upstream systems."""
    out: dict[str, list[str]] = {}
    for name in services:
        for topic in sorted(constructed_events(SERVICES_DIR / name, event_classes)):
            out.setdefault(topic, []).append(name)
    for topic, upstream in UPSTREAM_PRODUCERS.items():
        out.setdefault(topic, []).extend(upstream)
    return out
