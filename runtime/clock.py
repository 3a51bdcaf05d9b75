"""The injectable clock. Production uses wall time; tests and the demo use a controllable
clock so a year of standing orders runs in seconds.

Services run as separate processes, so the controllable clock lives in a small file
(Settings.clock_file, SALESBUS_CLOCK_FILE) holding the current instant; whoever drives the demo moves it forward.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class OffsetClock:
    """Wall time plus an offset that tests move forward: time still flows (timeouts, delays
    behave) but a test can jump two months ahead to make a standing order due."""

    def __init__(self, offset: timedelta = timedelta(0)):
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._offset = instant - datetime.now(timezone.utc)


class FileClock:
    """An OffsetClock shared by processes: the offset lives in a file (re-read when it changes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: tuple[int, timedelta] | None = None

    def _offset(self) -> timedelta:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return timedelta(0)
        if self._cache is None or self._cache[0] != mtime:
            self._cache = (mtime, timedelta(seconds=json.loads(self.path.read_text())["offset_s"]))
        return self._cache[1]

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._offset()

    def advance(self, delta: timedelta) -> None:
        self._write(self._offset() + delta)

    def set(self, instant: datetime) -> None:
        self._write(instant - datetime.now(timezone.utc))

    def _write(self, offset: timedelta) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"offset_s": offset.total_seconds()}))
        os.replace(tmp, self.path)  # atomic: readers never see half a file


def clock_from_settings(cfg) -> Clock:
    return FileClock(Path(cfg.clock_file)) if cfg.clock_file else WallClock()


def clock_from_env() -> Clock:
    """The clock this process's environment names (for entry points without a Settings at hand)."""
    from runtime.config import Settings
    return clock_from_settings(Settings())
