"""Where `salesbus up` listens: fixed, documented addresses so bookmarks, scrape configs and scripts
keep working across restarts (the demo and benchmarks take free ports instead, so they can run
beside a stack that is up).

Defaults below; override any of them in `<data dir>/ports.toml`

    broker = 19092
    [cart]
    http = 8201

or by environment (`SALESBUS_PORT_BROKER=19093`, `SALESBUS_PORT_CART_HTTP=8201`), which wins.
"""
from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path

#: 81xx: each service's HTTP API; 91xx: its /metrics, /healthz, /readyz. 19092 keeps clear of a
#: real Kafka on 9092; 19093 is the broker's local S3 store (durable topics); 2525 is the usual
#: unprivileged SMTP port.
DEFAULTS: dict[str, int] = {"broker": 19092, "smtp": 2525, "s3": 19093}
_ORDER = ("cart", "payments", "orders", "notifications", "crm", "scheduler", "analytics", "web")
for _n, _name in enumerate(_ORDER, start=1):
    DEFAULTS[f"{_name}.http"] = 8100 + _n
    DEFAULTS[f"{_name}.metrics"] = 9100 + _n


class PortError(RuntimeError):
    """A configured port is malformed or taken."""


def _env_name(key: str) -> str:
    return "SALESBUS_PORT_" + key.replace(".", "_").upper()


def load(data_dir: Path, environ: dict[str, str] | None = None) -> dict[str, int]:
    """The addresses for a stack in data_dir: defaults < ports.toml < SALESBUS_PORT_* variables."""
    environ = os.environ if environ is None else environ
    ports = dict(DEFAULTS)
    path = Path(data_dir) / "ports.toml"
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PortError(f"{path}: {exc}") from exc
        for key, value in doc.items():
            for sub, port in (value.items() if isinstance(value, dict) else [(None, value)]):
                ports[f"{key}.{sub}" if sub else key] = _valid(port, f"{path}: {key}{'.' + sub if sub else ''}")
    for key in list(ports):
        if _env_name(key) in environ:
            ports[key] = _valid(environ[_env_name(key)], _env_name(key))
    return ports


def _valid(value, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise PortError(f"{where}: {value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise PortError(f"{where}: {port} is outside 1..65535")
    return port


def check_free(ports: dict[str, int], keys) -> None:
    """Fail before starting anything when one of the stack's ports is taken, naming how to move it."""
    for key in keys:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", ports[key]))
            except OSError:
                raise PortError(f"port {ports[key]} ({key}) is in use: another stack or program listens there; "
                                f"set {_env_name(key)} or edit ports.toml in the data dir") from None
