"""The benchmark's pure parts (bench/measure.py): what it reads from /proc and how it summarises.
No timing here: the benchmark itself is `make bench` / `make bench-quick`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import measure  # noqa: E402

# A real line's shape (proc(5)): comm may hold spaces and parentheses.
STAT = ("4242 (postgres: bench (x)) S 4200 4242 4242 0 -1 4194560 900 0 0 0 "
        "250 50 30 20 20 0 1 0 12345 123456789 1500 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_percentile_is_nearest_rank_of_observed_values():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert measure.percentile(values, 50) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert measure.percentile(values, 99) == 99.0
    assert measure.percentile(values, 100) == 100.0
    assert measure.percentile([3.0, 1.0, 2.0], 0) == 1.0  # sorts first
    assert measure.percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_not_an_error():
    assert measure.percentile([], 99) != measure.percentile([], 99)  # NaN


def test_parse_stat_splits_at_the_last_parenthesis_and_reads_cpu_and_rss():
    st = measure.parse_stat(STAT, clock_ticks=100, page_bytes=4096)
    assert (st.pid, st.comm, st.state, st.ppid) == (4242, "postgres: bench (x)", "S", 4200)
    assert st.cpu_s == pytest.approx(3.0)            # utime 250 + stime 50 ticks
    assert st.children_cpu_s == pytest.approx(0.5)   # cutime 30 + cstime 20 ticks
    assert st.rss_bytes == 1500 * 4096


def _fake_proc(tmp_path: Path, entries: dict[int, tuple[int, int, int]]) -> Path:
    """pid -> (ppid, utime ticks, cutime ticks) as /proc/<pid>/stat files."""
    for pid, (ppid, utime, cutime) in entries.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} (p{pid}) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} 0 {cutime} 0 20 0 1 0 1 1 10 0")
    (tmp_path / "self").mkdir()  # not a pid: ignored
    return tmp_path


def test_tree_cpu_counts_live_children_and_the_reaped_ones_through_cutime(tmp_path):
    proc = _fake_proc(tmp_path, {10: (1, 100, 400), 11: (10, 50, 0), 12: (10, 25, 0), 13: (99, 1000, 0)})
    assert sorted(measure.children_of(10, proc)) == [11, 12]
    ticks = measure.CLOCK_TICKS
    cpu, rss, n = measure.tree_cpu_s(10, proc)
    assert cpu == pytest.approx((100 + 400 + 50 + 25) / ticks)  # pid 13 is someone else's
    assert (rss, n) == (3 * 10 * measure.PAGE_BYTES, 3)


def test_a_process_that_is_gone_reads_as_nothing(tmp_path):
    assert measure.read_stat(123456, proc=tmp_path) is None
    assert measure.tree_cpu_s(123456, proc=tmp_path) == (0.0, 0, 0)


def test_machine_reads_model_and_ram():
    m = measure.machine(cpuinfo="processor\t: 0\nmodel name\t: Test CPU @ 2GHz\n", meminfo="MemTotal:  2097152 kB\n")
    assert m["cpu_model"] == "Test CPU @ 2GHz" and m["ram_gib"] == 2.0
    assert {"cores", "python"} <= m.keys()


def test_the_json_keys_the_issue_asks_for():
    assert set(measure.REQUIRED_KEYS) == {
        "upstream_orders_per_s", "http_orders_per_s", "p99_confirmed_ms_half_load", "p99_email_ms_half_load",
        "cpu_ms_per_order", "idle_cpu_pct_of_one_core", "raw_chain_records_per_s", "machine"}
    full = {k: 1 for k in measure.REQUIRED_KEYS}
    assert measure.missing_keys(full) == []
    del full["machine"]
    assert measure.missing_keys(full) == ["machine"]
