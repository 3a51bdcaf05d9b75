"""The injectable clock. Production uses wall time; tests and the demo use a controllable
clock so a year of standing orders runs in seconds.

Services run as separate processes, so the controllable clock lives in a small file
(SALESBUS_CLOCK_FILE) holding the current instant; whoever drives the demo moves it forward.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """In-process controllable clock for unit and integration tests."""

    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant


class FileClock:
    """A clock shared by processes: reads the instant written by `set` (re-read when the file changes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: tuple[float, datetime] | None = None

    def now(self) -> datetime:
        mtime = self.path.stat().st_mtime_ns
        if self._cache is None or self._cache[0] != mtime:
            instant = datetime.fromisoformat(json.loads(self.path.read_text())["now"])
            self._cache = (mtime, instant)
        return self._cache[1]

    def set(self, instant: datetime) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"now": instant.astimezone(timezone.utc).isoformat()}))
        os.replace(tmp, self.path)  # atomic: readers never see half a file


def clock_from_env() -> Clock:
    path = os.environ.get("SALESBUS_CLOCK_FILE")
    return FileClock(Path(path)) if path else WallClock()
