"""Crash points for the runtime's own fault tests: SALESBUS_CRASH_AT=<point> makes the process
die abruptly (no cleanup, like kill -9) the first time it reaches that point."""
import os

_POINT = os.environ.get("SALESBUS_CRASH_AT")


def crash_point(name: str) -> None:
    if _POINT == name:
        os._exit(99)
