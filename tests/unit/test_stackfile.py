"""How the CLI finds a running stack (runtime/stackfile.py): before, only through ./.salesbus, so
from any other folder `salesbus tap` died with a traceback saying there was no broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from runtime import stackfile
from runtime.cli import app
from runtime.config import Settings

runner = CliRunner()


def _stack(tmp_path, name: str, bootstrap: str) -> object:
    data_dir = tmp_path / name
    data_dir.mkdir()
    (data_dir / "stack.json").write_text(json.dumps({"kafka_bootstrap": bootstrap, "database_url": "postgresql://x/",
                                                     "services": {"cart": {"http": 8101, "metrics": 9101}}}))
    return data_dir


def test_up_publishes_a_per_user_state_file_and_withdraws_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    data_dir = _stack(tmp_path, "a", "127.0.0.1:19092")
    state = stackfile.publish(data_dir / "stack.json", os.getpid(), {"data_dir": str(data_dir)})
    assert state == tmp_path / "state" / "salesbus" / "stack.json"
    written = json.loads(state.read_text())
    assert written["pid"] == os.getpid() and written["service_urls"] == {"cart": "http://127.0.0.1:8101"}
    assert json.loads((data_dir / "stack.json").read_text()) == written
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    stackfile.withdraw(os.getpid() + 1)  # another `salesbus up` stopping leaves ours
    assert state.exists()
    stackfile.withdraw(os.getpid())
    assert not state.exists()


def test_settings_find_the_stack_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # no ./.salesbus here
    monkeypatch.delenv("SALESBUS_DATA_DIR", raising=False)
    assert Settings().embedded() is None
    data_dir = _stack(tmp_path, "a", "127.0.0.1:19092")
    # a stand-in for the `salesbus up` that wrote it: alive, and `up` in its command line
    up = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "up"])
    try:
        stackfile.publish(data_dir / "stack.json", up.pid, {"data_dir": str(data_dir)})
        (data_dir / "stack.json").rename(data_dir / "moved.json")  # only the state file says where it is
        assert Settings().bootstrap() == "127.0.0.1:19092"
        # its pid taken by another program (here: this test): the file is stale
        stackfile.publish(data_dir / "moved.json", os.getpid(), {"data_dir": str(data_dir)})
        assert Settings().embedded() is None
    finally:
        up.kill()
        up.wait()

    # SALESBUS_STACK_FILE wins: a file or a data dir
    other = _stack(tmp_path, "b", "127.0.0.1:29092")
    monkeypatch.setenv("SALESBUS_STACK_FILE", str(other))
    assert Settings().bootstrap() == "127.0.0.1:29092"
    monkeypatch.setenv("SALESBUS_STACK_FILE", str(other / "stack.json"))
    assert Settings().bootstrap() == "127.0.0.1:29092"
    monkeypatch.delenv("SALESBUS_STACK_FILE")

    # a process told its data dir does not drift to another stack
    monkeypatch.setenv("SALESBUS_DATA_DIR", str(tmp_path / "elsewhere"))
    assert Settings().embedded() is None
    assert Settings(data_dir=tmp_path / "elsewhere").embedded() is None


def test_a_state_file_left_by_a_killed_up_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SALESBUS_DATA_DIR", raising=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data_dir = _stack(tmp_path, "a", "127.0.0.1:19092")
    stackfile.publish(data_dir / "stack.json", dead.pid, {"data_dir": str(data_dir)})
    (data_dir / "stack.json").unlink()
    assert Settings().embedded() is None
    result = runner.invoke(app, ["tap", "OrderPlaced", "--no-follow"],
                           env={"SALESBUS_KAFKA_BOOTSTRAP": None, "SALESBUS_DATABASE_URL": None})
    assert result.exit_code == 2 and "no broker" in result.output and "salesbus up" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
