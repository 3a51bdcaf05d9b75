"""`salesbus key list|issue|revoke`: API keys in the keys file every service reads.

Services re-read the file when it changes (runtime/auth.py KeyRing), so an issued, revoked or
expired key counts at once, without a restart. A key's secret is printed once, by `issue`; the
file keeps only its digest, and `list` shows ids.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from runtime.auth import ROLES, UnknownKey, issue_key, key_id_of, list_keys, revoke_by_id

_DURATION = re.compile(r"^(\d+)\s*(m|h|d|w)$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class _KeyGroup(TyperGroup):
    """`salesbus key ROLE SUBJECT` (before list/issue/revoke existed) still issues a key."""

    def resolve_command(self, ctx, args):
        if args and args[0] in ROLES:
            args = ["issue", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_KeyGroup, no_args_is_help=True,
                  help="API keys: list them, issue one (optionally expiring), revoke one. Every service "
                       "re-reads the keys file when it changes: no restart needed.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """`30d`, `12h`, `90m`, `2w` from now, or an RFC 3339 time / a date (midnight UTC); in the future."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(text.strip())
    if m:
        at = now + timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    else:
        from runtime.tap import parse_when
        try:
            at = parse_when(text, now)
        except ValueError:
            raise ValueError(f"--expires {text!r}: give a duration (30d, 12h, 90m, 2w) or an RFC 3339 time") from None
        if at <= now:
            raise ValueError(f"--expires {text!r} is not in the future")
    return at.replace(microsecond=0)


def keys_file(data_dir: Optional[Path]) -> Path:
    """--data-dir's keys file, else SALESBUS_API_KEYS_FILE, else the running embedded stack's."""
    from runtime.config import Settings
    from runtime.stackfile import where_to_look

    if data_dir is not None:
        return data_dir / "api_keys.json"
    cfg = Settings()
    if cfg.api_keys_file is not None:
        return cfg.api_keys_file
    stack = cfg.embedded() or {}
    if stack.get("api_keys_file"):
        return Path(stack["api_keys_file"])
    if stack.get("data_dir"):
        return Path(stack["data_dir"]) / "api_keys.json"
    _fail(f"no keys file: pass --data-dir, set SALESBUS_API_KEYS_FILE, or {where_to_look()}")


DATA_DIR = typer.Option(None, "--data-dir", help="the stack's data dir (default: SALESBUS_API_KEYS_FILE, "
                        "else the running `salesbus up`'s keys file)")


@app.command("issue")
def issue(role: str = typer.Argument(..., help=" | ".join(ROLES)),
          subject: str = typer.Argument(..., help="customer id, salesperson id, operator or analyst name"),
          email: Optional[str] = typer.Option(None, help="a salesperson's mailbox"),
          expires: Optional[str] = typer.Option(None, help="refused from then on: 30d, 12h, 2w from now, or an "
                                                "RFC 3339 time (default: never)"),
          data_dir: Optional[Path] = DATA_DIR):
    """Issue a key and print it: the only time it is shown (the file keeps its digest)."""
    if role not in ROLES:
        _fail(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    try:
        until = parse_expiry(expires) if expires else None
    except ValueError as exc:
        _fail(str(exc))
    path = keys_file(data_dir)
    key = issue_key(path, role, subject, email, expires=until)
    print(key)  # alone on stdout, so `KEY=$(salesbus key issue ...)` works
    typer.echo(f"issued {role} key {key_id_of(key)} for {subject}"
               f"{f', expires {until.isoformat()}' if until else ''} in {path}; it is not shown again", err=True)


@app.command("list")
def list_(data_dir: Optional[Path] = DATA_DIR,
          as_json: bool = typer.Option(False, "--json", help="one JSON document for scripts")):
    """Every key: id, role, subject, created, expires, revoked (never the key itself)."""
    path = keys_file(data_dir)
    now = datetime.now(timezone.utc)
    rows = []
    for kid, e in list_keys(path):
        state = e.refusal(kid, now)
        rows.append({"id": kid, "role": e.role, "subject": e.subject,
                     "created": e.created.isoformat() if e.created else None,
                     "expires": e.expires.isoformat() if e.expires else None,
                     "revoked": e.revoked.isoformat() if e.revoked else None,
                     "revoked_reason": e.revoked_reason,
                     "state": "revoked" if e.revoked else ("expired" if state else "active")})
    if as_json:
        print(json.dumps({"keys_file": str(path), "keys": rows}))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("id", "role", "subject", "created", "expires", "revoked", "state",
                  title=f"API keys in {path}", title_justify="left")
    for r in rows:
        table.add_row(r["id"], r["role"], r["subject"], r["created"] or "-", r["expires"] or "never",
                      (r["revoked"] or "-") + (f" ({r['revoked_reason']})" if r["revoked_reason"] else ""), r["state"])
    Console(width=None if Console().is_terminal else 160).print(table)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="the key's id, as `salesbus key list` shows it"),
           reason: Optional[str] = typer.Option(None, help="said in the 401 answers to the key's holder"),
           data_dir: Optional[Path] = DATA_DIR):
    """Revoke a key: every service refuses it from now on (401 saying it was revoked); it stays listed."""
    path = keys_file(data_dir)
    try:
        entry = revoke_by_id(path, key_id, reason)
    except UnknownKey as exc:
        _fail(str(exc))
    print(f"revoked {entry.role} key {key_id} of {entry.subject} at {entry.revoked.isoformat()}")
