"""Start and stop the embedded stack cleanly: one stack per data dir, nothing left behind.

- `StackLock`: a second `salesbus up` on the same data dir says who already runs it instead of
  starting another stack on the same PostgreSQL data (an flock, released by the kernel when the
  holder dies, so a kill -9 never leaves a stale lock).
- `PostgresGuard`: PostgreSQL is started by pg_ctl and so is not our child: when the process that
  started it is killed (kill -9 of `salesbus up`, of pytest) it would run on as an orphan. The
  guard is a tiny child process that the kernel signals when its parent dies (PR_SET_PDEATHSIG);
  it then asks the postmaster for a fast shutdown (SIGINT: roll back open transactions, close
  connections, checkpoint) and leaves when the postmaster is gone.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.embedded import _die_with_parent


class AlreadyRunning(RuntimeError):
    pass


class StackLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "up.lock"
        self._fd: int | None = None

    def acquire(self) -> "StackLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(f"salesbus is already running on {self.path.parent} ({holder or 'pid unknown'}); "
                                 f"`salesbus status` shows it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PostgresGuard:
    def __init__(self, postmaster_pid: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.lifecycle", str(postmaster_pid)],
                                     preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        """After a clean stop of PostgreSQL: the guard has nothing left to do."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def guard(postmaster_pid: int, grace_s: float = 15.0) -> None:
    """Run in the guard process: wait for our parent to die (SIGTERM) or the postmaster to go."""
    parent_gone = []
    signal.signal(signal.SIGTERM, lambda *_: parent_gone.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    while _alive(postmaster_pid) and not parent_gone:
        time.sleep(0.5)
    if parent_gone:
        stop_postmaster(postmaster_pid, grace_s)


def stop_postmaster(pid: int, grace_s: float = 15.0) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT: crash recovery at next start) after grace_s."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGQUIT, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _alive(pid):
            return


if __name__ == "__main__":
    guard(int(sys.argv[1]))
