"""The benchmark's pure parts (unit-tested in tests/unit/test_bench_measure.py): percentiles,
reading CPU time and RSS of a process from /proc, the machine's description, and the keys every
`.salesbus/bench.json` must carry."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

#: what every bench.json has (issue 11), whatever else it carries
REQUIRED_KEYS = ("upstream_orders_per_s", "http_orders_per_s", "p99_confirmed_ms_half_load", "p99_email_ms_half_load",
                 "cpu_ms_per_order", "idle_cpu_pct_of_one_core", "raw_chain_records_per_s", "machine")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank on the sorted values (no interpolation: every figure printed was observed)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    #: own user + system CPU seconds
    cpu_s: float
    #: user + system CPU seconds of children it has waited for (exited PostgreSQL backends)
    children_cpu_s: float
    rss_bytes: int


def parse_stat(text: str, clock_ticks: int = CLOCK_TICKS, page_bytes: int = PAGE_BYTES) -> ProcStat:
    """One /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat) line, see proc(5). The command name
    is in parentheses and may itself hold spaces and parentheses: split at the last ')'."""
    head, _, rest = text.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    f = rest.split()
    # f[0] is field 3 (state); utime 14, stime 15, cutime 16, cstime 17, rss 24
    return ProcStat(pid=int(pid_s), comm=comm, state=f[0], ppid=int(f[1]),
                    cpu_s=(int(f[11]) + int(f[12])) / clock_ticks,
                    children_cpu_s=(int(f[13]) + int(f[14])) / clock_ticks,
                    rss_bytes=int(f[21]) * page_bytes)


def read_stat(pid: int, tid: int | None = None, proc: Path = Path("/proc")) -> ProcStat | None:
    path = proc / str(pid) / "stat" if tid is None else proc / str(pid) / "task" / str(tid) / "stat"
    try:
        return parse_stat(path.read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_of(ppid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose parent is `ppid` (PostgreSQL's backends and workers under its postmaster)."""
    out = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            st = read_stat(int(entry.name), proc=proc)
            if st is not None and st.ppid == ppid:
                out.append(st.pid)
    return out


def tree_cpu_s(pid: int, proc: Path = Path("/proc")) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, process count) of a process and its live children, plus what its
    exited children used (cutime/cstime): a PostgreSQL backend that ends between two readings is
    still counted once the postmaster has reaped it."""
    top = read_stat(pid, proc=proc)
    if top is None:
        return 0.0, 0, 0
    cpu, rss, n = top.cpu_s + top.children_cpu_s, top.rss_bytes, 1
    for child in children_of(pid, proc):
        st = read_stat(child, proc=proc)
        if st is not None:
            cpu, rss, n = cpu + st.cpu_s + st.children_cpu_s, rss + st.rss_bytes, n + 1
    return cpu, rss, n


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(cpuinfo: str | None = None, meminfo: str | None = None) -> dict:
    """Cores, CPU model, RAM and Python: what a figure means depends on them."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if meminfo is None:
        meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    return {"cores": os.cpu_count(), "cpu_model": model, "ram_gib": round(kib / 1024 / 1024, 1),
            "arch": platform.machine(), "python": platform.python_version()}


def missing_keys(result: dict) -> list[str]:
    return [k for k in REQUIRED_KEYS if k not in result]
