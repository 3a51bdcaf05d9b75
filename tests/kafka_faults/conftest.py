"""The fault tier's report: the oracle table of every fault test, printed at the end of the run."""
from __future__ import annotations

ORACLE_ROWS: list[tuple[str, dict]] = []
#: what was done to the cluster, in order, as the tests describe it
FAULTS: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if not ORACLE_ROWS:
        return
    columns = list(dict.fromkeys(c for _, r in ORACLE_ROWS for c in r))
    width = {c: max(len(c), *(len(str(r.get(c, "-"))) for _, r in ORACLE_ROWS)) for c in columns}
    name_w = max(len("test"), *(len(n) for n, _ in ORACLE_ROWS))
    terminalreporter.write_sep("=", "fault tier oracle (Apache Kafka, three brokers)")
    terminalreporter.write_line("  ".join(["test".ljust(name_w), *(c.rjust(width[c]) for c in columns)]))
    for name, row in ORACLE_ROWS:
        terminalreporter.write_line("  ".join([name.ljust(name_w), *(str(row.get(c, "-")).rjust(width[c]) for c in columns)]))
    for line in FAULTS:
        terminalreporter.write_line(f"fault: {line}")
