"""The keys file: changed under a lock (the web service issues and revokes a key per session from
many threads, and no change may overwrite another: before the lock, concurrent read-modify-writes
lost keys); keys listed, expired and revoked with `salesbus key` (before, only by editing the
file), refused at once by a running service with the reason; the secret shown only at issue."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from fastapi import Depends
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from runtime.auth import KeyRing, Principal, issue_key, key_id_of, require, revoke_key
from runtime.cli import app as cli
from runtime.cli_keys import parse_expiry
from runtime.http import make_app

runner = CliRunner()


def test_concurrent_issues_and_revokes_keep_every_other_key(tmp_path):
    path = tmp_path / "api_keys.json"
    kept = issue_key(path, "operator", "olga")
    with ThreadPoolExecutor(8) as pool:
        issued = list(pool.map(lambda i: issue_key(path, "customer", f"c-{i}"), range(80)))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: revoke_key(path, k), issued[:40]))
    on_file = json.loads(path.read_text())
    assert {key_id_of(k) for k in (kept, *issued[40:])} == {n.removeprefix("sha256:")[:12] for n in on_file}
    assert not {kept, *issued} & set(path.read_text().split('"'))  # digests only: no usable key in the file
    ring = KeyRing(path=path)
    assert ring.lookup(issued[0]) is None
    assert ring.lookup(issued[-1]).subject == "c-79"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_plain_key_entries_of_older_files_still_work(tmp_path):
    path = tmp_path / "api_keys.json"
    path.write_text(json.dumps({"k-old": {"role": "operator", "subject": "olga"},
                                "k-hand": {"role": "analyst", "subject": "ana", "expires": "2000-01-01T00:00:00"}}))
    assert KeyRing(path=path).lookup("k-old") == Principal(role="operator", subject="olga")
    # a hand-written time without an offset is UTC (not a TypeError at every request)
    assert "expired at 2000-01-01T00:00:00+00:00" in KeyRing(path=path).check("k-hand")[1]
    listed = runner.invoke(cli, ["key", "list", "--data-dir", str(tmp_path), "--json"])
    assert {k["id"] for k in json.loads(listed.stdout)["keys"]} == {key_id_of("k-old"), key_id_of("k-hand")}
    assert "k-old" not in listed.stdout


def _served(path):
    """A service app reading the keys file as every service does, with one analyst-only route."""
    app = make_app("keys", keyring=KeyRing(path=path))

    @app.get("/figures")
    def figures(p: Principal = Depends(require("analyst", "operator"))):
        return {"subject": p.subject}
    return TestClient(app)


def test_issue_list_revoke_through_the_cli_and_a_running_service_follows(tmp_path):
    path = tmp_path / "api_keys.json"
    issued = runner.invoke(cli, ["key", "issue", "analyst", "ana", "--expires", "30d", "--data-dir", str(tmp_path)])
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.strip()
    assert key.startswith("sb_anal_") and "\n" not in key  # alone on stdout: KEY=$(salesbus key issue ...)
    kid = key_id_of(key)
    assert kid in issued.stderr and "not shown again" in issued.stderr
    old = runner.invoke(cli, ["key", "operator", "olga", "--data-dir", str(tmp_path)])  # the form before `issue`
    assert old.exit_code == 0 and old.stdout.startswith("sb_oper_"), old.output

    listed = json.loads(runner.invoke(cli, ["key", "list", "--data-dir", str(tmp_path), "--json"]).stdout)["keys"]
    mine = next(k for k in listed if k["id"] == kid)
    assert (mine["role"], mine["subject"], mine["revoked"], mine["state"]) == ("analyst", "ana", None, "active")
    expires = datetime.fromisoformat(mine["expires"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(timezone.utc) <= timedelta(days=30)
    table = runner.invoke(cli, ["key", "list", "--data-dir", str(tmp_path)]).stdout
    assert kid in table and "analyst" in table and key not in table and old.stdout.strip() not in table

    api = _served(path)
    auth = {"Authorization": f"Bearer {key}"}
    assert api.get("/figures", headers=auth).json() == {"subject": "ana"}
    revoked = runner.invoke(cli, ["key", "revoke", kid, "--reason", "left the company", "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0 and kid in revoked.stdout, revoked.output
    refused = api.get("/figures", headers=auth)  # the same app, not restarted
    assert refused.status_code == 401
    assert f"API key {kid} was revoked at" in refused.text and "left the company" in refused.text
    after = json.loads(runner.invoke(cli, ["key", "list", "--data-dir", str(tmp_path), "--json"]).stdout)["keys"]
    assert next(k for k in after if k["id"] == kid)["state"] == "revoked"

    unknown = runner.invoke(cli, ["key", "revoke", "000000000000", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "no key with id" in unknown.output


def test_an_expired_key_is_refused_saying_when_it_expired(tmp_path):
    path = tmp_path / "api_keys.json"
    soon = datetime.now(timezone.utc) + timedelta(seconds=2)
    key = issue_key(path, "operator", "olga", expires=soon)
    ring = KeyRing(path=path)
    assert ring.check(key)[0] is not None
    principal, why = ring.check(key, now=soon + timedelta(seconds=1))
    assert principal is None and why == f"API key {key_id_of(key)} expired at {soon.isoformat()}"
    past = issue_key(path, "operator", "olga", expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    refused = _served(path).get("/figures", headers={"X-API-Key": past})
    assert refused.status_code == 401 and "expired at" in refused.text
    listed = json.loads(runner.invoke(cli, ["key", "list", "--data-dir", str(tmp_path), "--json"]).stdout)["keys"]
    assert next(k for k in listed if k["id"] == key_id_of(past))["state"] == "expired"


def test_expiry_is_a_duration_or_a_future_time():
    now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2026-04-01", now) == datetime(2026, 4, 1, tzinfo=timezone.utc)
    for bad in ("2026-02-01", "soon", "-3d"):
        try:
            parse_expiry(bad, now)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")
    bad_role = runner.invoke(cli, ["key", "issue", "boss", "x", "--data-dir", "/tmp"])
    assert bad_role.exit_code == 2 and "analyst" in bad_role.output
