"""Durable topics for the embedded stack: Tansu's `s3://` storage engine on a local, on-disk S3
server, so `salesbus up` keeps topics, committed offsets and dead letters across a stop, a crash
and kill -9 of everything.

The S3 server is alocals3's `alocals3-server`, a static Rust binary. It honours conditional writes
(`If-None-Match: *`, `If-Match`), which Tansu relies on for its offsets and metadata: servers that
ignore them (localbucket, s3rver) corrupt offsets under concurrent producers, and moto loses its
data on restart. The binary ships only in alocals3's cp312-abi3 wheels (on Python 3.11,
`pip install alocals3` silently picks the slow pure-Python 0.3.0), so we fetch that wheel with pip
once and keep the binary in the user's cache (`make install` does it; `python -m runtime.durable`
by hand).

Measured here (2 cores, one Python producer, 200-byte records, linger.ms=5): produce 42 k
records/s durable vs 235 k/s in memory; a consumer group read 25 k records in about a second
either way. The test tiers keep the in-memory engine where durability is not under test.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import httpx

from runtime.embedded import StackError, _die_with_parent, free_port, wait_for_port

ALOCALS3_VERSION = "0.11.2"
_PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "aarch64": "manylinux_2_28_aarch64"}
BUCKET = "tansu"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "salesbus"


def s3_server_binary() -> Path:
    """The alocals3-server binary, fetched from PyPI on first use."""
    binary = cache_dir() / f"alocals3-{ALOCALS3_VERSION}" / "alocals3-server"
    if binary.exists():
        return binary
    if sys.platform != "linux" or platform.machine() not in _PLATFORMS:
        raise StackError(f"durable topics need alocals3-server, published for Linux {'/'.join(_PLATFORMS)} only; "
                         "run `salesbus up --in-memory`")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"alocals3=={ALOCALS3_VERSION}", "--no-deps",
               "--only-binary=:all:", "--python-version", "3.12", "--platform", _PLATFORMS[platform.machine()],
               "--quiet", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("alocals3-*.whl"))
        if done.returncode != 0 or not wheels:
            raise StackError(f"could not fetch alocals3 {ALOCALS3_VERSION} from PyPI for durable topics "
                             f"({done.stderr.strip()[-300:]}); run `salesbus up --in-memory`")
        binary.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read("alocals3/bin/alocals3-server")
        partial = binary.with_suffix(".partial")
        partial.write_bytes(data)
        partial.chmod(0o755)
        partial.rename(binary)  # atomic: a concurrent first start never runs half a binary
    return binary


class S3Server:
    """alocals3-server on loopback, its objects and index under root."""

    bucket = BUCKET

    def __init__(self, root: Path, log_path: Path, port: int | None = None):
        self.root, self.port = Path(root), port or free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.cluster_id = self._cluster_id()  # before the server creates its data folder
        binary = s3_server_binary()
        logf = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--storage-root", str(self.root / "data"),
             # four slashes: sqlite:/// then an absolute path (three would be relative to our cwd)
             "--database-url", f"sqlite:///{self.root.resolve() / 'index.db'}", "--log-level", "warn",
             # no free-space floor: the operator's disk monitoring owns that, not a refused write
             "--min-free-bytes", "0"],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        logf.close()
        try:
            wait_for_port(self.port, 15, f"alocals3-server ({binary})", self.proc)
            r = httpx.put(f"{self.endpoint}/{BUCKET}", timeout=10)
            if r.status_code not in (200, 201, 409):
                raise StackError(f"alocals3-server refused to create bucket {BUCKET}: {r.status_code} {r.text[:200]}")
        except BaseException:
            self.stop()
            raise

    def _cluster_id(self) -> str:
        """The broker's cluster id, kept with its data (Tansu stores a cluster's topics under its
        id): chosen once per data dir; "tansu_cluster" (Tansu's default) for data made before."""
        path = self.root / "cluster-id"
        if not path.exists():
            made_before = (self.root / "data").exists() and any((self.root / "data").iterdir())
            path.write_text("tansu_cluster" if made_before else f"salesbus-{uuid.uuid4().hex[:12]}")
        return path.read_text().strip()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/s3"

    def broker_env(self) -> dict[str, str]:
        """What Tansu's object store client needs (auth is off on a loopback-only server)."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "salesbus",
                "AWS_SECRET_ACCESS_KEY": "salesbus", "AWS_DEFAULT_REGION": "eu-central-1"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


if __name__ == "__main__":
    print(s3_server_binary())
