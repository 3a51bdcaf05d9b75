"""Crash points for the runtime's own fault tests: SALESBUS_CRASH_AT=<point> (Settings.crash_at)
makes the process die abruptly (no cleanup, like kill -9) the first time it reaches that point."""
import os
from functools import cache


@cache
def _point() -> str | None:
    # read once, on first use: importing the runtime never fails on another setting's bad value
    from runtime.config import Settings
    return Settings().crash_at


def crash_point(name: str) -> None:
    if _point() == name:
        os._exit(99)
