"""Where the CLI finds a running embedded stack, from any folder.

`salesbus up` writes what a client needs (broker, database, service URLs, data dir, keys file,
its pid) to `<data dir>/stack.json` and copies it to a per-user state file,
`$XDG_STATE_HOME/salesbus/stack.json` (`~/.local/state/salesbus/stack.json` by default); it
removes both when it stops. A client looks, in this order, at:

1. `SALESBUS_STACK_FILE` (printed by `salesbus up`): that stack.json, or a data dir holding one;
2. `<data dir>/stack.json` (`./.salesbus` unless SALESBUS_DATA_DIR says otherwise): the old way,
   which works inside the folder `salesbus up` ran in;
3. the per-user state file, unless a data dir was named explicitly (a process started for one
   stack, such as a service under a test harness, must not drift to another) and only while the
   `salesbus up` that wrote it still runs (after a kill -9 the file stays behind: it is ignored,
   also when its pid has been reused by another program).

Explicit addresses (SALESBUS_KAFKA_BOOTSTRAP, SALESBUS_DATABASE_URL) win over all of these.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "SALESBUS_STACK_FILE"


def user_state_file(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "salesbus" / "stack.json"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _running_up(pid: Any) -> bool:
    """The pid is alive and, where /proc tells, still a `salesbus up` (a pid reused after a kill -9
    of the writer is some other program)."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: the pid check is all there is
    return b"up" in argv


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # half-written or unreadable: treated as no stack (the writer replaces it atomically)


def find(stack_file: Path | None, data_dir: Path, data_dir_explicit: bool) -> dict[str, Any] | None:
    """The running stack's description, or None (see the module's docstring for the order)."""
    if stack_file is not None:
        path = Path(stack_file)
        return _read(path / "stack.json" if path.is_dir() else path)
    local = _read(Path(data_dir) / "stack.json")
    if local is not None or data_dir_explicit:
        return local
    shared = _read(user_state_file())
    if shared is not None and _running_up(shared.get("pid")):
        return shared
    return None


def where_to_look() -> str:
    """For error messages: how a client finds the stack."""
    return (f"start the embedded stack with `salesbus up` (found from any folder through "
            f"{user_state_file()}, or {ENV})")


def _write(path: Path, info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.chmod(tmp, 0o600)  # it names the database URL (with its password, on a server)
    os.replace(tmp, path)


def publish(info_path: Path, pid: int, extra: dict[str, Any]) -> Path:
    """`salesbus up`, once its services run: complete <data dir>/stack.json and copy it to the
    per-user state file. Returns the state file's path."""
    info = {**(_read(info_path) or {}), **extra, "pid": pid}
    services = info.get("services") or {}
    info["service_urls"] = {name: f"http://127.0.0.1:{p['http']}" for name, p in services.items() if "http" in p}
    _write(info_path, info)
    state = user_state_file()
    _write(state, info)
    return state


def withdraw(pid: int) -> None:
    """`salesbus up` stopping: remove the per-user state file if it still describes this stack
    (a later `salesbus up` on another data dir may have replaced it)."""
    state = user_state_file()
    info = _read(state)
    if info is not None and info.get("pid") == pid:
        state.unlink(missing_ok=True)
